package main

import "syscall"

// nodeProcAttr puts a node in its own process group, so that Ctrl-C reaches
// only the parent (which then stops the nodes in order), and has the kernel
// send it SIGTERM if the parent dies without doing so: no orphans.
func nodeProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
