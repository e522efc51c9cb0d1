//go:build !linux

package demo

import "syscall"

// nodeProcAttr puts a node in its own process group, so that Ctrl-C reaches
// only the parent, which then stops the nodes in order. Without Linux's
// Pdeathsig a node notices its parent's death when its stdin closes.
func nodeProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// frozenNodeProcAttr is nodeProcAttr for the node that -freeze stops.
func frozenNodeProcAttr() *syscall.SysProcAttr { return nodeProcAttr() }
