package raftnode

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// A node that starts with an empty data directory and was not told to
// bootstrap is "joining": it may have lost its disk, and a node that forgot
// its log and its vote must not vote. Raft's safety rests on every voter
// remembering what it acknowledged: with one wiped voter a candidate that
// lacks a committed entry can win with that voter's blind vote, and the
// entry (a lock grant) is lost and its token may be issued again.
//
// A joining node accepts entries from the leader (what it stores now, it
// really stores) but refuses every vote and pre-vote request and stands in
// no election, until it applies an admit entry carrying its incarnation, a
// random id it draws when it starts empty. Only the leader writes admit
// entries (when an operator adds the node back, or its admitter finds the
// node joining), and by the time the node applies one it holds the
// leader's log up to that entry, which contains every committed entry.
// The incarnation, kept in the JOINING file until admission, makes an old
// admit entry (from an earlier recovery, replayed from the log or a
// snapshot) count for nothing.

// HasState reports whether dir holds a node's Raft state (a log store,
// snapshots or a joining marker), without opening it: a command uses it to
// decide whether a bootstrap instruction applies before it starts the node.
func HasState(dir string) bool {
	for _, name := range []string{"raft.db", "wal", "snapshots", joiningFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

// joiningFile marks a data directory whose node has not been admitted yet;
// it holds the incarnation.
const joiningFile = "JOINING"

// errJoining refuses an outgoing vote request of a joining node.
var errJoining = errors.New("raftnode: joining, not admitted yet: stands in no election")

// joining is a node's joining state, shared with its vote guard.
type joining struct {
	dir         string
	incarnation string
	active      atomic.Bool
	refused     atomic.Int64 // vote and pre-vote requests refused
}

// loadJoining reads the joining marker, or starts one when the node has no
// state and no instruction to bootstrap.
func loadJoining(dir string, hasState, bootstrap bool) (*joining, error) {
	j := &joining{dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, joiningFile))
	switch {
	case err == nil:
		j.incarnation = strings.TrimSpace(string(b))
		j.active.Store(j.incarnation != "")
		return j, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("raftnode: read %s: %w", joiningFile, err)
	}
	if hasState || bootstrap {
		return j, nil
	}
	var raw [12]byte
	_, _ = rand.Read(raw[:])
	j.incarnation = hex.EncodeToString(raw[:])
	if err := os.WriteFile(filepath.Join(dir, joiningFile), []byte(j.incarnation+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("raftnode: write %s: %w", joiningFile, err)
	}
	j.active.Store(true)
	return j, nil
}

// admit ends joining mode if inc is this node's incarnation.
func (j *joining) admit(inc string) (bool, error) {
	if !j.active.Load() || inc == "" || inc != j.incarnation {
		return false, nil
	}
	if err := os.Remove(filepath.Join(j.dir, joiningFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("raftnode: remove %s: %w", joiningFile, err)
	}
	j.active.Store(false)
	return true, nil
}

// voteGuard wraps the transport of a node that may be joining: while it is,
// incoming vote and pre-vote requests are answered "not granted" before
// Raft sees them, and its own requests are not sent.
type voteGuard struct {
	raft.Transport
	j    *joining
	once sync.Once
	out  chan raft.RPC
	stop chan struct{}
}

func newVoteGuard(t raft.Transport, j *joining) *voteGuard {
	return &voteGuard{Transport: t, j: j, out: make(chan raft.RPC), stop: make(chan struct{})}
}

// Consumer filters the wrapped transport's incoming RPCs.
func (g *voteGuard) Consumer() <-chan raft.RPC {
	g.once.Do(func() { go g.filter(g.Transport.Consumer()) })
	return g.out
}

func (g *voteGuard) filter(in <-chan raft.RPC) {
	for {
		select {
		case <-g.stop:
			return
		case rpc := <-in:
			if g.j.active.Load() {
				switch req := rpc.Command.(type) {
				case *raft.RequestVoteRequest:
					g.j.refused.Add(1)
					rpc.Respond(&raft.RequestVoteResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}, Term: req.Term, Granted: false}, nil)
					continue
				case *raft.RequestPreVoteRequest:
					g.j.refused.Add(1)
					rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}, Term: req.Term, Granted: false}, nil)
					continue
				}
			}
			select {
			case g.out <- rpc:
			case <-g.stop:
				return
			}
		}
	}
}

// RequestVote is not sent while joining.
func (g *voteGuard) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if g.j.active.Load() {
		return errJoining
	}
	return g.Transport.RequestVote(id, target, args, resp)
}

// RequestPreVote is not sent while joining.
func (g *voteGuard) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if g.j.active.Load() {
		return errJoining
	}
	if pv, ok := g.Transport.(raft.WithPreVote); ok {
		return pv.RequestPreVote(id, target, args, resp)
	}
	return raft.ErrUnsupportedProtocol
}

// Close stops the filter and closes the wrapped transport.
func (g *voteGuard) Close() error {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	if c, ok := g.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

var (
	_ raft.WithPreVote = (*voteGuard)(nil)
	_ raft.WithClose   = (*voteGuard)(nil)
)
