package raftnode

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestHeartbeatsGoThroughTheMainLoop checks the #695 mitigation: with the
// wrapper in place a heartbeat arrives on the consumer channel (which only
// Raft's main loop reads) and the fast-path handler is never called. Without
// the wrapper the same heartbeat takes the fast path, which shows the test
// can tell the two apart.
func TestHeartbeatsGoThroughTheMainLoop(t *testing.T) {
	for _, tc := range []struct {
		name     string
		wrap     bool
		fastPath bool
	}{
		{"wrapped", true, false},
		{"upstream", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logger := hclog.New(&hclog.LoggerOptions{Output: io.Discard})
			recvTCP, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 2, time.Second, logger)
			if err != nil {
				t.Fatal(err)
			}
			defer recvTCP.Close()
			var recv raft.Transport = recvTCP
			if tc.wrap {
				recv = serialHeartbeats{Transport: recvTCP}
			}
			fast := make(chan raft.RPC, 1)
			recv.SetHeartbeatHandler(func(rpc raft.RPC) {
				fast <- rpc
				rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
			})
			send, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 2, time.Second, logger)
			if err != nil {
				t.Fatal(err)
			}
			defer send.Close()

			// A heartbeat: no entries, no commit, just the leader's term.
			hb := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("leader"), Addr: []byte(send.LocalAddr())}, Term: 1}
			done := make(chan error, 1)
			go func() {
				var resp raft.AppendEntriesResponse
				done <- send.AppendEntries("follower", recv.LocalAddr(), hb, &resp)
			}()
			select {
			case rpc := <-recv.Consumer():
				if tc.fastPath {
					t.Fatal("heartbeat went through the consumer channel, expected the fast path")
				}
				rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
			case <-fast:
				if !tc.fastPath {
					t.Fatal("heartbeat took the fast path despite the wrapper (hashicorp/raft#695)")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("heartbeat never arrived")
			}
			if err := <-done; err != nil {
				t.Fatalf("heartbeat RPC: %v", err)
			}
		})
	}
}
