package eventbus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers a dead letter carries besides the original message's own.
const (
	// DeadLetterReasonHeader is why the consumer gave up (the error text).
	DeadLetterReasonHeader = "Payonce-Dead-Letter-Reason"
	// DeadLetterSubjectHeader is the subject the message was published on.
	DeadLetterSubjectHeader = "Payonce-Dead-Letter-Subject"
	// DeadLetterStreamHeader and DeadLetterSequenceHeader locate the
	// original in its stream.
	DeadLetterStreamHeader   = "Payonce-Dead-Letter-Stream"
	DeadLetterSequenceHeader = "Payonce-Dead-Letter-Sequence"
	// DeadLetterConsumerHeader names the durable consumer that gave up.
	DeadLetterConsumerHeader = "Payonce-Dead-Letter-Consumer"
	// DeadLetterDeliveredHeader is how many times it had been delivered.
	DeadLetterDeliveredHeader = "Payonce-Dead-Letter-Delivered"
	// DeadLetterMsgIDHeader is the original Nats-Msg-Id (the event id).
	DeadLetterMsgIDHeader = "Payonce-Dead-Letter-Msg-Id"
	// DeadLetterTimeHeader is when it was dead-lettered (RFC 3339, UTC).
	DeadLetterTimeHeader = "Payonce-Dead-Letter-Time"
)

// deadLetter copies msg, its headers and cause into the DeadLetterStream.
// The copy's Nats-Msg-Id names the consumer and the original's stream
// sequence, so a dead letter recorded twice (the Term after it was lost)
// is stored once.
func (c Consumer) deadLetter(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg, meta *jetstream.MsgMetadata, cause error) error {
	dl := nats.NewMsg(DeadLetterSubjectPrefix + c.Durable + "." + msg.Subject())
	dl.Data = msg.Data()
	for k, vs := range msg.Headers() {
		if strings.HasPrefix(k, "Nats-") {
			continue // server directives of the original publish
		}
		for _, v := range vs {
			dl.Header.Add(k, v)
		}
	}
	id := msg.Headers().Get(jetstream.MsgIDHeader)
	dl.Header.Set(DeadLetterReasonHeader, cause.Error())
	dl.Header.Set(DeadLetterSubjectHeader, msg.Subject())
	dl.Header.Set(DeadLetterConsumerHeader, c.Durable)
	dl.Header.Set(DeadLetterMsgIDHeader, id)
	dl.Header.Set(DeadLetterTimeHeader, time.Now().UTC().Format(time.RFC3339Nano))
	dedup := c.Durable + ":" + id
	if meta != nil {
		dl.Header.Set(DeadLetterStreamHeader, meta.Stream)
		dl.Header.Set(DeadLetterSequenceHeader, strconv.FormatUint(meta.Sequence.Stream, 10))
		dl.Header.Set(DeadLetterDeliveredHeader, strconv.FormatUint(meta.NumDelivered, 10))
		dedup = c.Durable + ":" + meta.Stream + ":" + strconv.FormatUint(meta.Sequence.Stream, 10)
	}
	dl.Header.Set(jetstream.MsgIDHeader, dedup)
	if _, err := js.PublishMsg(ctx, dl); err != nil {
		return fmt.Errorf("dead letter %s: %w", msg.Subject(), err)
	}
	return nil
}

// DeadLetter is one message a consumer gave up on.
type DeadLetter struct {
	// Sequence is its position in the DeadLetterStream (what replay takes).
	Sequence uint64
	// Subject, MsgID and Data are the original message's.
	Subject  string
	MsgID    string
	Data     []byte
	Header   nats.Header
	Reason   string
	Consumer string
	Time     time.Time
}

func deadLetterOf(raw *jetstream.RawStreamMsg) DeadLetter {
	h := raw.Header
	if h == nil {
		h = nats.Header{}
	}
	t, _ := time.Parse(time.RFC3339Nano, h.Get(DeadLetterTimeHeader))
	return DeadLetter{
		Sequence: raw.Sequence,
		Subject:  h.Get(DeadLetterSubjectHeader),
		MsgID:    h.Get(DeadLetterMsgIDHeader),
		Data:     raw.Data,
		Header:   h,
		Reason:   h.Get(DeadLetterReasonHeader),
		Consumer: h.Get(DeadLetterConsumerHeader),
		Time:     t,
	}
}

// DeadLetters lists up to limit dead letters, oldest first, from sequence
// from on (0 = the first).
func DeadLetters(ctx context.Context, js jetstream.JetStream, from uint64, limit int) ([]DeadLetter, error) {
	st, err := js.Stream(ctx, DeadLetterStream)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	var out []DeadLetter
	seq := max(from, info.State.FirstSeq)
	for len(out) < limit && seq <= info.State.LastSeq && info.State.Msgs > 0 {
		raw, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(DeadLetterSubjectPrefix+">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("dead letter after %d: %w", seq, err)
		}
		out = append(out, deadLetterOf(raw))
		seq = raw.Sequence + 1
	}
	return out, nil
}

// GetDeadLetter returns the dead letter at seq.
func GetDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (DeadLetter, error) {
	st, err := js.Stream(ctx, DeadLetterStream)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dead letters: %w", err)
	}
	raw, err := st.GetMsg(ctx, seq)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	return deadLetterOf(raw), nil
}

// Replay re-publishes the dead letter at seq on its original subject, with
// its original headers (trace context included) and body, and then
// removes it from the DeadLetterStream. Run it once the cause is fixed.
//
// The copy gets a new Nats-Msg-Id ("replay:<seq>:<original>"), since the
// original id may still be inside the duplicate window, where JetStream
// would drop the copy as a duplicate. Applying it once is the consumers'
// inbox's job, which keys on the event id inside the body, like for any
// redelivery. Replaying the same dead letter twice inside the window
// publishes once.
func Replay(ctx context.Context, js jetstream.JetStream, seq uint64) (DeadLetter, error) {
	d, err := GetDeadLetter(ctx, js, seq)
	if err != nil {
		return DeadLetter{}, err
	}
	if d.Subject == "" {
		return d, fmt.Errorf("dead letter %d has no %s header", seq, DeadLetterSubjectHeader)
	}
	msg := nats.NewMsg(d.Subject)
	msg.Data = d.Data
	for k, vs := range d.Header {
		if strings.HasPrefix(k, "Payonce-Dead-Letter-") || strings.HasPrefix(k, "Nats-") {
			continue
		}
		for _, v := range vs {
			msg.Header.Add(k, v)
		}
	}
	msg.Header.Set(jetstream.MsgIDHeader, "replay:"+strconv.FormatUint(seq, 10)+":"+d.MsgID)
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return d, fmt.Errorf("replay dead letter %d on %s: %w", seq, d.Subject, err)
	}
	st, err := js.Stream(ctx, DeadLetterStream)
	if err != nil {
		return d, fmt.Errorf("dead letters: %w", err)
	}
	if err := st.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return d, fmt.Errorf("replayed dead letter %d, but could not remove it: %w", seq, err)
	}
	return d, nil
}
