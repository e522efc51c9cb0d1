package demo

import "syscall"

// nodeProcAttr puts a node in its own process group, so that Ctrl-C reaches
// only the parent (which then stops the nodes in order), and has the kernel
// send it SIGTERM if the parent dies without doing so: no orphans.
func nodeProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// frozenNodeProcAttr is nodeProcAttr for the node that -freeze stops: a
// stopped process keeps a SIGTERM pending until it is continued, so if the
// parent dies while the node is frozen, only SIGKILL ends it.
func frozenNodeProcAttr() *syscall.SysProcAttr {
	a := nodeProcAttr()
	a.Pdeathsig = syscall.SIGKILL
	return a
}
