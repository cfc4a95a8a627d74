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
// says so at SelfPath. On the leader, the admitter finds joining peers and
// writes the admit entry with the incarnation the node reported; the node
// stops refusing once it applies that entry, by which time it holds the
// leader's log. That is how a cluster started by one bootstrapping node
// gains its other members, and how a node whose disk was replaced comes
// back.
//
// A peer not yet in the configuration is added as a nonvoter first, and
// promoted to voter only once it reports itself admitted: learner, admit,
// promote. Added straight as a voter, a joiner counts towards every commit
// while it still refuses its vote; a leader that lost touch with it for
// one lease timeout (a loaded machine, a slow catch-up) stepped down and
// could never be elected again, since the joiner's vote was needed and the
// admit entry that would release it needed a leader. make dev's start-up
// hung that way under load (TestJoinerCannotStallTheLeader).
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

// admit asks peer id whether it is joining and, if so, admits it. With
// add (the leader's own rounds), a peer not in the configuration is added
// as a nonvoter first, and a nonvoter that reports itself admitted is
// promoted to voter; without it (the operator's POST /v1/cluster/voters,
// which adds the voter itself), it is only admitted.
func (a *Admitter) admit(ctx context.Context, id string, add bool) error {
	base := a.Peers[id]
	if base == "" {
		return nil // not reachable by HTTP: an operator admits it by hand
	}
	self, err := a.self(ctx, base)
	if err != nil {
		return err
	}
	if self.ID != id {
		return nil
	}
	member, voter := true, true
	if add {
		if member, voter, err = a.Cluster.Suffrage(id); err != nil {
			return err
		}
	}
	if !self.Joining && !member {
		return nil // a node with state of its own, not ours to add
	}
	if !member {
		if err := a.Cluster.AddNonvoter(id, self.RaftAddr); err != nil {
			return fmt.Errorf("add nonvoter %s: %w", id, err)
		}
	}
	if self.Joining {
		if err := a.Cluster.Admit(ctx, id, self.Incarnation); err != nil {
			return fmt.Errorf("admit %s: %w", id, err)
		}
		if a.Logger != nil {
			a.Logger.Info("admitted joining node", "peer", id, "incarnation", self.Incarnation)
		}
		if voter {
			return nil
		}
		// Promote only once the node has applied its admission, so that
		// as a voter it never refuses the vote a new leader may need.
		if self, err = a.self(ctx, base); err != nil || self.Joining {
			return err // not yet: the next round promotes it
		}
	}
	if !voter {
		if err := a.Cluster.AddVoter(id, self.RaftAddr); err != nil {
			return fmt.Errorf("promote %s to voter: %w", id, err)
		}
		if a.Logger != nil {
			a.Logger.Info("promoted admitted node to voter", "peer", id)
		}
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
