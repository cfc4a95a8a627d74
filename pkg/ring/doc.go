// Package ring decides which member of a changing group owns a key, so
// that, for example, every instance of a service agrees which one handles
// a given customer, and a membership change disturbs as few customers as
// possible.
//
// # Why not hash(key) % N
//
// The obvious way to spread keys over N members is hash(key) % N. It
// balances well, but when N changes almost every key changes owner: going
// from 10 to 11 members moves about 10 keys in 11. For a payment system that
// means almost every customer's in-flight work, caches and locks change
// hands at once. Consistent hashing is the family of schemes in which a join
// or a leave moves only about 1/N of the keys: the share the new member
// should take, or the share the leaving one had.
//
// The classic version puts each member at many pseudo-random points on a
// circle ("virtual nodes") and gives a key to the next member point
// clockwise of the key's hash. It moves few keys, but its balance depends on
// chance: with 100 members the busiest one typically carries 30 to 50% more
// keys than the average unless each member has thousands of points, which
// costs memory and lookup time.
//
// # What this package does
//
// This package keeps the property that matters, few moved keys, and
// removes the chance. It splits the hash space into a fixed, power-of-two
// number of slots (at least 128 per member) and keeps a table saying which
// member owns each slot. A lookup is one hash and one array read:
//
//	owner = members[table[Hash(key) & (len(table)-1)]]
//
// The table is filled so that each member owns its weighted share of slots,
// exact to one slot. When the membership changes, Rebalance edits the old
// table as little as possible: a new member takes its share of slots one at
// a time from whichever member is furthest above its own share, and a
// leaving member's slots go one at a time to whichever member is furthest
// below. So a join moves exactly the new member's share of keys, a leave
// exactly the leaver's, and no key ever moves between two members that did
// not change. Diff lists the slots that changed hands, for handing work
// over.
//
// The price is that the table depends on the order of past changes, not
// only on who is a member now: parties agree on owners only if they start
// from the same table and apply the same changes. Build gives a canonical
// table that is a pure function of the member set; Rebalance is a pure
// function of the previous table and the new member set;
// Snapshot.Fingerprint lets parties check they agree; and Decode lets a
// coordinator store the table (MarshalBinary) in its replicated state and
// hand it to instances. docs/adr/0003-ring-design.md records that decision and
// docs/ring.md the measured balance, movement and speed.
//
// # Using it
//
// A Snapshot is immutable, so lookups need no lock. A Ring holds the
// current Snapshot behind an atomic pointer: readers call Load (or
// Ring.Owner) while the one writer installs the next snapshot with Apply or
// Store.
//
//	var r ring.Ring
//	if _, err := r.Apply([]ring.Member{{Name: "orders-1"}, {Name: "orders-2"}}); err != nil {
//		return err
//	}
//	owner, ok := r.Owner(customerID)
//	replicas := r.Load().Successors(customerID, 3, buf[:0])
//
// Successors gives the owner followed by further distinct members, for
// placing replicas or choosing a fallback when the owner is down.
//
// The hash (XXH64) and the placement rules are versioned by HashVersion:
// changing them remaps keys, so they change only with a new version.
package ring
