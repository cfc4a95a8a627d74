// Package lock is the client of payonce's coordinator: distributed locks
// granted as leases with fencing tokens, and the Postgres fence that makes
// those tokens count.
//
// A lock service cannot, on its own, stop two processes from acting as the
// holder at the same time. A holder may pause (a long GC, a frozen VM, a slow
// disk) after it checked it still holds the lock and before it writes; its
// lease expires meanwhile, another process is granted the lock, and both
// write. Two things together close that gap:
//
//   - Lease.Done closes, and Lease.Context is cancelled, as soon as the lease
//     may have been lost: at the send time of the last successful keepalive
//     plus the TTL, minus a safety margin, which is always before the server
//     can hand the lock to someone else. Well-behaved holders stop there.
//   - Every grant carries a fencing token that strictly increases. Writes
//     carry the token, and the store refuses a token lower than the highest
//     it has seen for that resource (Fence, inside the write's own Postgres
//     transaction). A holder that paused past its lease and wakes up is
//     refused by Postgres, whatever it believes.
//
// Acquire carries a request id, so retrying it after a timeout or a leader
// change can never take the lock twice. The client finds the leader by
// itself: any coordinator node forwards writes to the leader, and a node that
// cannot names the leader in its answer.
package lock
