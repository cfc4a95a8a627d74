// Package console is the domain of payonce's console: one web page that
// shows the consistency machinery of a running stack while it works, and
// lets a learner break things on purpose and watch the stack absorb it.
//
// The console owns no data. It polls the stack's own APIs (the
// coordinators' node status and membership, the orders and payments APIs as
// the dev-mode demo caller, the services' /metrics, the bank's ledger and
// fault switches) and folds what it reads into one View: the ring of each
// service (every slot and its owner, and the slots that moved at the last
// membership change), the Raft nodes (role, term, commit and applied index),
// the payments partitions' leases (all 64) and any other held locks, with
// their fencing tokens and remaining TTL, the latest orders and payments of
// the customers it watches with the state changes it saw, and the
// idempotency middleware's first answers, replays and conflicts. The page gets every new View over server-sent events.
//
// Actions (bank faults, a retry storm, killing the Raft leader, stopping or
// pausing a payments instance) exist only in dev mode: outside it every one
// is refused, so a console pointed at a real deployment can look but never
// touch. Process-level actions go through the dev stack's control endpoint
// (cmd/devstack); under docker compose the page lists the commands instead.
//
// This package holds the View, the ports it reads through (Stack, Control)
// and the procedures (Observe, Storm); services/console/remote implements
// the ports over HTTP and services/console/http serves the page.
// docs/console.md shows it at work; ADR 0060 records why it polls.
package console
