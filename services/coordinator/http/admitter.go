package http

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Admitter lets nodes that came up with an empty data directory vote again.
// Such a node joins: it accepts the leader's log but refuses to vote (it may
// have lost a disk, and a voter must remember what it acknowledged), and
// says so at SelfPath. On the leader, the admitter finds joining peers,
// adds any that are not in the configuration as voters, and writes the
// admit entry with the incarnation the node reported; the node stops
// refusing once it applies that entry, by which time it holds the leader's
// log. That is how a cluster started by one bootstrapping node gains its
// other members, and how a node whose disk was replaced comes back.
type Admitter struct {
	// Cluster is this node.
	Cluster Cluster
	// Peers maps each server id to its HTTP base URL (COORDINATOR_PEERS).
	Peers map[string]string
	// Client asks peers about themselves (default: 2 s timeout).
	Client *http.Client
	// Interval is how often the leader looks (default 1 s).
	Interval time.Duration
	// Logger reports admissions.
	Logger *slog.Logger
}

// Run looks for joining peers while this node leads, until ctx ends.
func (a *Admitter) Run(ctx context.Context) {
	interval := a.Interval
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !a.Cluster.IsLeader() {
			continue
		}
		for id := range a.Peers {
			if id == a.Cluster.ID() {
				continue
			}
			if err := a.admit(ctx, id, true); err != nil && a.Logger != nil {
				a.Logger.Warn("admit joining peer", "peer", id, "error", err)
			}
		}
	}
}

// admit asks peer id whether it is joining and, if so, admits it (adding
// it as a voter first when add is set and it is not in the configuration).
func (a *Admitter) admit(ctx context.Context, id string, add bool) error {
	base := a.Peers[id]
	if base == "" {
		return nil // not reachable by HTTP: an operator admits it by hand
	}
	self, err := a.self(ctx, base)
	if err != nil {
		return err
	}
	if !self.Joining || self.ID != id {
		return nil
	}
	if add {
		servers, err := a.Cluster.Servers()
		if err != nil {
			return err
		}
		if _, ok := servers[id]; !ok {
			if err := a.Cluster.AddVoter(id, self.RaftAddr); err != nil {
				return fmt.Errorf("add voter %s: %w", id, err)
			}
		}
	}
	if err := a.Cluster.Admit(ctx, id, self.Incarnation); err != nil {
		return fmt.Errorf("admit %s: %w", id, err)
	}
	if a.Logger != nil {
		a.Logger.Info("admitted joining node", "peer", id, "incarnation", self.Incarnation)
	}
	return nil
}

func (a *Admitter) self(ctx context.Context, base string) (Self, error) {
	client := a.Client
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+SelfPath, nil)
	if err != nil {
		return Self{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return Self{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Self{}, fmt.Errorf("%s%s: %s", base, SelfPath, resp.Status)
	}
	var s Self
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return Self{}, fmt.Errorf("%s%s: %w", base, SelfPath, err)
	}
	return s, nil
}
