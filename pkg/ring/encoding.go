package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The binary form of a Snapshot, all integers little-endian or uvarint:
//
//	"ring" | format byte (1) | HashVersion byte | uvarint version |
//	table bits byte (0 for an empty ring) | uvarint member count |
//	per member: uvarint name length, name, uvarint weight |
//	table: 2 bytes per slot, the owner's member index
//
// It exists so that a table that depends on history can be stored in the
// coordinator's replicated state and handed to instances that join later.
const (
	encodingMagic  = "ring"
	encodingFormat = 1
)

// ErrBadEncoding is wrapped by every error Decode returns.
var ErrBadEncoding = errors.New("ring: bad snapshot encoding")

// MarshalBinary encodes the snapshot for Decode; it never fails.
func (s *Snapshot) MarshalBinary() ([]byte, error) {
	if s == nil {
		s = emptySnapshot
	}
	buf := make([]byte, 0, 32+len(s.table)*2+len(s.members)*16)
	buf = append(buf, encodingMagic...)
	buf = append(buf, encodingFormat, HashVersion)
	buf = appendUvarint(buf, s.version)
	bits := 0
	for 1<<bits < len(s.table) {
		bits++
	}
	if len(s.table) == 0 {
		bits = 0
	}
	buf = append(buf, byte(bits))
	buf = appendUvarint(buf, uint64(len(s.members)))
	for _, m := range s.members {
		buf = appendUvarint(buf, uint64(len(m.Name)))
		buf = append(buf, m.Name...)
		buf = appendUvarint(buf, uint64(m.Weight))
	}
	for _, owner := range s.table {
		buf = binary.LittleEndian.AppendUint16(buf, owner)
	}
	return buf, nil
}

// Decode parses what MarshalBinary wrote. It checks everything a lookup
// relies on (the scheme version, member names in strict order, weights,
// table size, every owner index), so a corrupt or hostile input yields an
// error wrapping ErrBadEncoding, never a snapshot that panics later.
func Decode(data []byte) (*Snapshot, error) {
	d := decoder{data: data}
	if string(d.bytes(len(encodingMagic))) != encodingMagic {
		return nil, d.fail("missing magic")
	}
	if format := d.byte(); format != encodingFormat {
		return nil, d.fail(fmt.Sprintf("format %d, want %d", format, encodingFormat))
	}
	if scheme := d.byte(); scheme != HashVersion {
		return nil, d.fail(fmt.Sprintf("hash version %d, want %d", scheme, HashVersion))
	}
	version := d.uvarint()
	bits := int(d.byte())
	count := d.uvarint()
	if d.err != nil {
		return nil, d.fail(d.err.Error())
	}
	if count > MaxMembers || count > uint64(len(d.data)) {
		return nil, d.fail(fmt.Sprintf("member count %d", count))
	}
	if (count == 0) != (bits == 0) || (bits != 0 && (bits < minSlotBits || bits > maxSlotBits)) {
		return nil, d.fail(fmt.Sprintf("%d table bits for %d members", bits, count))
	}
	members := make([]Member, count)
	for i := range members {
		n := d.uvarint()
		if n == 0 || n > uint64(len(d.data)) {
			return nil, d.fail(fmt.Sprintf("member %d name length %d", i, n))
		}
		name := string(d.bytes(int(n)))
		weight := d.uvarint()
		if d.err != nil {
			return nil, d.fail(d.err.Error())
		}
		if weight == 0 || weight > MaxWeight {
			return nil, d.fail(fmt.Sprintf("member %q weight %d", name, weight))
		}
		if i > 0 && name <= members[i-1].Name {
			return nil, d.fail(fmt.Sprintf("member %q out of order", name))
		}
		members[i] = Member{Name: name, Weight: uint32(weight)}
	}
	s := &Snapshot{version: version, members: members}
	if bits > 0 {
		slots := 1 << bits
		if len(d.data) != slots*2 {
			return nil, d.fail(fmt.Sprintf("table of %d bytes, want %d", len(d.data), slots*2))
		}
		s.table = make([]uint16, slots)
		for i := range s.table {
			owner := binary.LittleEndian.Uint16(d.data[2*i:])
			if uint64(owner) >= count {
				return nil, d.fail(fmt.Sprintf("slot %d owner %d of %d members", i, owner, count))
			}
			s.table[i] = owner
		}
		s.mask = uint64(slots - 1)
		s.names = make([]string, count)
		for i, m := range members {
			s.names[i] = m.Name
		}
	} else if len(d.data) != 0 {
		return nil, d.fail(fmt.Sprintf("%d trailing bytes", len(d.data)))
	}
	s.fingerprint = computeFingerprint(s.members, s.table)
	return s, nil
}

// UnmarshalBinary replaces *s with the decoded snapshot. Prefer Decode,
// which returns a fresh snapshot: a Snapshot must not change once shared.
func (s *Snapshot) UnmarshalBinary(data []byte) error {
	decoded, err := Decode(data)
	if err != nil {
		return err
	}
	*s = *decoded
	return nil
}

// decoder reads fields in order and remembers the first error, so Decode
// can check once after a group of reads.
type decoder struct {
	data []byte
	err  error
}

func (d *decoder) fail(reason string) error {
	return fmt.Errorf("%w: %s", ErrBadEncoding, reason)
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil || n > len(d.data) {
		d.err = errors.New("truncated")
		return nil
	}
	b := d.data[:n]
	d.data = d.data[n:]
	return b
}

func (d *decoder) byte() byte {
	b := d.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.data)
	if n <= 0 {
		d.err = errors.New("bad varint")
		return 0
	}
	d.data = d.data[n:]
	return v
}

func appendUvarint(buf []byte, v uint64) []byte {
	return binary.AppendUvarint(buf, v)
}
