package raftnode

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the node's Prometheus metrics.
type Metrics struct {
	// LeaderChanges counts leadership changes this node observed.
	LeaderChanges prometheus.Counter
	// ApplyLatency is the time from proposal to applied result, in seconds.
	ApplyLatency prometheus.Histogram
	// BatchSize is the number of entries applied per batch (group commit).
	BatchSize prometheus.Histogram
	// ActiveLeases is the number of held locks, as seen by the leader.
	ActiveLeases prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		LeaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "coordinator", Name: "leader_changes_total", Help: "Leadership changes observed by this node.",
		}),
		ApplyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "coordinator", Name: "raft_apply_seconds", Help: "Time from proposing a command to its applied result.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "coordinator", Name: "raft_apply_batch_entries", Help: "Entries applied per batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		ActiveLeases: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "coordinator", Name: "active_leases", Help: "Locks currently held.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.LeaderChanges, m.ApplyLatency, m.BatchSize, m.ActiveLeases)
	}
	return m
}
