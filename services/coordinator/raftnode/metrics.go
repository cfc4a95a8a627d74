package raftnode

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the node's Prometheus metrics.
type Metrics struct {
	// LeaderChanges counts leadership changes this node observed.
	LeaderChanges prometheus.Counter
	// IsLeader is 1 while this node is the Raft leader, 0 otherwise; summed
	// over the cluster it is the number of leaders, which an alert wants
	// to be exactly 1.
	IsLeader prometheus.Gauge
	// ApplyLatency is the time from proposal to applied result, in seconds:
	// the entry's replication to a majority (the commit) plus the state
	// machine's apply, as a caller of the coordinator waits for both.
	ApplyLatency prometheus.Histogram
	// FSMApplyLatency is the state machine's share of it: the time to
	// apply one batch of committed entries, on every node.
	FSMApplyLatency prometheus.Histogram
	// BatchSize is the number of entries applied per batch (group commit).
	BatchSize prometheus.Histogram
	// ActiveLeases is the number of held locks, as seen by the leader.
	ActiveLeases prometheus.Gauge
	// Acquires counts the lock acquisitions this node proposed (as the
	// leader), by outcome: granted at once, queued behind a holder (granted
	// later, when the holder lets go), or refused.
	Acquires *prometheus.CounterVec
}

// Outcomes of an acquire, the values of the Acquires counter's outcome label.
const (
	AcquireGranted = "granted"
	AcquireQueued  = "queued"
	AcquireRefused = "refused"
)

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		LeaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "coordinator", Name: "leader_changes_total", Help: "Leadership changes observed by this node.",
		}),
		IsLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "coordinator", Name: "raft_leader", Help: "1 while this node is the Raft leader, else 0.",
		}),
		ApplyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "coordinator", Name: "raft_apply_seconds", Help: "Time from proposing a command to its applied result (commit on a majority plus apply).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		FSMApplyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "coordinator", Name: "raft_fsm_apply_seconds", Help: "Time the state machine takes to apply one batch of committed entries.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10),
		}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "coordinator", Name: "raft_apply_batch_entries", Help: "Entries applied per batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		ActiveLeases: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "coordinator", Name: "active_leases", Help: "Locks currently held.",
		}),
		Acquires: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "coordinator", Name: "lock_acquires_total", Help: "Lock acquisitions proposed by this node, by outcome (granted, queued, refused).",
		}, []string{"outcome"}),
	}
	// Every outcome is exported from the start, at 0, so a dashboard
	// shows a flat line rather than no data before the first lock.
	for _, o := range []string{AcquireGranted, AcquireQueued, AcquireRefused} {
		m.Acquires.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.LeaderChanges, m.IsLeader, m.ApplyLatency, m.FSMApplyLatency, m.BatchSize, m.ActiveLeases, m.Acquires)
	}
	return m
}

// observeAcquire counts one acquire's result.
func (m *Metrics) observeAcquire(queued, granted bool) {
	switch {
	case granted:
		m.Acquires.WithLabelValues(AcquireGranted).Inc()
	case queued:
		m.Acquires.WithLabelValues(AcquireQueued).Inc()
	default:
		m.Acquires.WithLabelValues(AcquireRefused).Inc()
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
