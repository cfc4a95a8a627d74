package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/payonce/payonce/internal/eventbus"
	"github.com/payonce/payonce/internal/identity"
)

// deadletters runs `payonce-cli deadletters list|show <seq>|replay <seq>`
// against the NATS servers at natsURL, as the operator (identity.AdminCLI,
// whose certificate is in certsDir) when certsDir is set. Replay is for
// after the cause is fixed: it re-publishes the message on its own subject,
// with its own headers and body, and the consumers' inboxes apply it once.
func (c *cli) deadletters(ctx context.Context, natsURL, certsDir string, args []string) error {
	usage := errors.New("usage: payonce-cli deadletters list | show <seq> | replay <seq>")
	if len(args) == 0 {
		return usage
	}
	opts := []nats.Option{nats.Name("payonce-cli"), nats.Timeout(5 * time.Second)}
	if certsDir != "" {
		tlsCfg, err := identity.ClientConfig(identity.PartyFiles(certsDir, identity.AdminCLI), identity.NATS)
		if err != nil {
			return fmt.Errorf("nats tls: %w", err)
		}
		opts = append(opts, nats.Secure(tlsCfg))
	}
	nc, err := nats.Connect(natsURL, opts...)
	if err != nil {
		return fmt.Errorf("nats %s: %w", natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	seqArg := func() (uint64, error) {
		if len(args) < 2 {
			return 0, usage
		}
		seq, err := strconv.ParseUint(args[1], 10, 64)
		if err != nil || seq == 0 {
			return 0, fmt.Errorf("dead letter sequence %q: want a positive integer (see `deadletters list`)", args[1])
		}
		return seq, nil
	}
	switch args[0] {
	case "list":
		var from uint64
		n := 0
		for {
			page, err := eventbus.DeadLetters(ctx, js, from, 100)
			if err != nil {
				return err
			}
			for _, d := range page {
				c.say("%d\t%s\t%s\t%s\t%s\t%s", d.Sequence, d.Time.Format(time.RFC3339), d.Consumer, d.Subject, d.MsgID, d.Reason)
				n++
			}
			if len(page) < 100 {
				break
			}
			from = page[len(page)-1].Sequence + 1
		}
		c.say("%d dead letter(s)", n)
		return nil
	case "show":
		seq, err := seqArg()
		if err != nil {
			return err
		}
		d, err := eventbus.GetDeadLetter(ctx, js, seq)
		if err != nil {
			return err
		}
		c.say("sequence: %d\nsubject:  %s\nconsumer: %s\nmsg id:   %s\nreason:   %s\nheaders:", d.Sequence, d.Subject, d.Consumer, d.MsgID, d.Reason)
		keys := make([]string, 0, len(d.Header))
		for k := range d.Header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			c.say("  %s: %s", k, d.Header.Get(k))
		}
		c.say("body:\n%s", d.Data)
		return nil
	case "replay":
		seq, err := seqArg()
		if err != nil {
			return err
		}
		d, err := eventbus.Replay(ctx, js, seq)
		if err != nil {
			return err
		}
		c.say("replayed dead letter %d on %s (event %s); it is no longer in %s", seq, d.Subject, d.MsgID, eventbus.DeadLetterStream)
		return nil
	default:
		return usage
	}
}
