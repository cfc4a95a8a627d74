package proc

import "syscall"

// childAttr makes a child die with its parent (Pdeathsig), so that an
// aborted run or a killed test leaves nothing behind on a port; and puts it
// in a process group of its own, so that a Ctrl-C in the terminal reaches
// only the parent, which then stops its children in order (Stop).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
