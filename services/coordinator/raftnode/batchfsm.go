package raftnode

import (
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/payonce/payonce/services/coordinator/fsm"
)

// batchFSM adapts fsm.Machine to raft.BatchingFSM: committed entries arrive in
// batches (group commit) and each gets its own result.
type batchFSM struct {
	m           *fsm.Machine
	metrics     *Metrics
	beforeApply func() // test hook, see Config.beforeApply
}

var _ raft.BatchingFSM = (*batchFSM)(nil)

// ApplyBatch applies committed entries in log order.
func (b *batchFSM) ApplyBatch(logs []*raft.Log) []any {
	if b.beforeApply != nil {
		b.beforeApply()
	}
	start := time.Now()
	out := make([]any, len(logs))
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			b.m.Skip(l.Index)
			continue
		}
		cmd, err := fsm.Decode(l.Data)
		if err != nil {
			// Every replica fails the same way on the same bytes, so
			// skipping keeps them identical.
			b.m.Skip(l.Index)
			out[i] = fsm.Result{Err: err}
			continue
		}
		out[i] = b.m.Apply(l.Index, l.Term, cmd)
	}
	if b.metrics != nil {
		b.metrics.BatchSize.Observe(float64(len(logs)))
		b.metrics.FSMApplyLatency.Observe(time.Since(start).Seconds())
	}
	return out
}

// Apply applies one committed entry.
func (b *batchFSM) Apply(l *raft.Log) any { return b.ApplyBatch([]*raft.Log{l})[0] }

// Snapshot captures the state; encoding happens here, under the machine's
// read lock, so Persist can run while Apply continues.
func (b *batchFSM) Snapshot() (raft.FSMSnapshot, error) {
	return snapshot(b.m.Snapshot()), nil
}

// Restore replaces the state with a snapshot's.
func (b *batchFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return b.m.Restore(rc)
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}
