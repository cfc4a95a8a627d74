package localpg

import (
	"errors"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// serverUser returns the unprivileged identity to run the server as when
// this process is root (PostgreSQL refuses to run as root), or nil. Root is
// the usual case in Linux containers and CI machines.
func serverUser() (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if uid == 0 {
			continue
		}
		return &osUser{uid: uid, gid: gid}, nil
	}
	return nil, errors.New("running as root and no unprivileged user (postgres or nobody) to run PostgreSQL as: create one with `useradd --system postgres`")
}

func credential(u *osUser) *syscall.Credential {
	if u == nil {
		return nil
	}
	return &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}
}

// initdbAttr runs initdb as u (nil: as this process).
func initdbAttr(u *osUser) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: credential(u)}
}

// postmasterAttr runs the server as u, in its own process group; and if
// this process dies without calling Stop, the server dies with it instead
// of lingering on the port (Pdeathsig).
func postmasterAttr(u *osUser) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: credential(u), Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
