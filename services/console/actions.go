package console

import (
	"context"
	"fmt"
	"regexp"
	"slices"

	"github.com/payonce/payonce/internal/customer"
	"github.com/payonce/payonce/internal/errs"
)

// The actions below break things on purpose. Each first checks dev mode:
// that one check, in one place per action, is what keeps a console pointed
// at a real deployment from touching it.

// FaultsRequest is a change to the bank's fault switches; nil fields keep
// their current value.
type FaultsRequest struct {
	// LoseNext makes the bank process the next N requests and lose their
	// answers ("charged, but the response never arrived").
	LoseNext *int `json:"lose_next,omitempty"`
	// LatencyMS delays every mutating bank request.
	LatencyMS *int64 `json:"latency_ms,omitempty"`
	// DeclineCard adds a card number the issuer declines; AcceptCard removes one.
	DeclineCard string `json:"decline_card,omitempty"`
	AcceptCard  string `json:"accept_card,omitempty"`
	// Clear resets every fault first.
	Clear bool `json:"clear,omitempty"`
}

// SetBankFaults changes the simulated bank's faults.
func (c *Console) SetBankFaults(ctx context.Context, req FaultsRequest) (BankFaults, error) {
	if !c.cfg.DevMode {
		return BankFaults{}, ErrDevModeOff
	}
	var fields []errs.FieldError
	if req.LoseNext != nil && (*req.LoseNext < 0 || *req.LoseNext > 100) {
		fields = append(fields, errs.FieldError{Field: "lose_next", Reason: "between 0 and 100"})
	}
	if req.LatencyMS != nil && (*req.LatencyMS < 0 || *req.LatencyMS > 10_000) {
		fields = append(fields, errs.FieldError{Field: "latency_ms", Reason: "between 0 and 10000"})
	}
	for name, card := range map[string]string{"decline_card": req.DeclineCard, "accept_card": req.AcceptCard} {
		if card != "" && !cardPattern.MatchString(card) {
			fields = append(fields, errs.FieldError{Field: name, Reason: "12 to 19 digits"})
		}
	}
	if len(fields) > 0 {
		return BankFaults{}, errs.E(errs.Invalid, "invalid fault change").WithFields(fields...)
	}
	f, err := c.cfg.Stack.BankFaults(ctx)
	if err != nil {
		return BankFaults{}, fmt.Errorf("read bank faults: %w", err)
	}
	if req.Clear {
		f = BankFaults{DeclineCards: []string{}}
	}
	if req.LoseNext != nil {
		f.LoseNext = *req.LoseNext
	}
	if req.LatencyMS != nil {
		f.LatencyMS = *req.LatencyMS
	}
	if req.DeclineCard != "" && !slices.Contains(f.DeclineCards, req.DeclineCard) {
		f.DeclineCards = append(f.DeclineCards, req.DeclineCard)
	}
	if req.AcceptCard != "" {
		f.DeclineCards = slices.DeleteFunc(f.DeclineCards, func(s string) bool { return s == req.AcceptCard })
	}
	if f.DeclineCards == nil {
		f.DeclineCards = []string{}
	}
	if err := c.cfg.Stack.SetBankFaults(ctx, f); err != nil {
		return BankFaults{}, fmt.Errorf("set bank faults: %w", err)
	}
	return f, nil
}

// KillLeader SIGKILLs the coordinator that leads now (a crash, not a
// handover) and returns its process name. The survivors elect a new leader.
func (c *Console) KillLeader(ctx context.Context) (string, error) {
	ctl, err := c.control()
	if err != nil {
		return "", err
	}
	name, err := ctl.KillLeader(ctx)
	if err != nil {
		return "", fmt.Errorf("kill the leader: %w", err)
	}
	return name, nil
}

// StartProcess starts a stopped (or killed) dev stack process again.
func (c *Console) StartProcess(ctx context.Context, name string) error {
	ctl, err := c.control()
	if err != nil {
		return err
	}
	if err := validProcess(name); err != nil {
		return err
	}
	if err := ctl.Start(ctx, name); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	return nil
}

// StopProcess stops a payments or orders instance gracefully: it leaves the
// ring, and its slots move to the others.
func (c *Console) StopProcess(ctx context.Context, name string) error {
	ctl, err := c.control()
	if err != nil {
		return err
	}
	if err := validProcess(name); err != nil {
		return err
	}
	if err := ctl.Stop(ctx, name); err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	return nil
}

// PauseProcess freezes an instance (SIGSTOP) for longer than its lock lease,
// then lets it run on: it wakes up as a stale holder, and the fence in
// PostgreSQL refuses its writes.
func (c *Console) PauseProcess(ctx context.Context, name string) error {
	ctl, err := c.control()
	if err != nil {
		return err
	}
	if err := validProcess(name); err != nil {
		return err
	}
	if err := ctl.Pause(ctx, name, c.cfg.PauseFor); err != nil {
		return fmt.Errorf("pause %s: %w", name, err)
	}
	return nil
}

// StopDatabase makes a service's database refuse connections for the
// configured outage (OutageFor): the long outage the services heal from
// (orders' sweeper, the event bus's unlimited redelivery). Accepted work
// completes, once, when it is back.
func (c *Console) StopDatabase(ctx context.Context, name string) error {
	ctl, err := c.control()
	if err != nil {
		return err
	}
	if err := validDatabase(name); err != nil {
		return err
	}
	if err := ctl.StopDatabase(ctx, name, c.cfg.OutageFor); err != nil {
		return fmt.Errorf("stop the %s database: %w", name, err)
	}
	return nil
}

// StartDatabase ends a database outage before its time.
func (c *Console) StartDatabase(ctx context.Context, name string) error {
	ctl, err := c.control()
	if err != nil {
		return err
	}
	if err := validDatabase(name); err != nil {
		return err
	}
	if err := ctl.StartDatabase(ctx, name); err != nil {
		return fmt.Errorf("start the %s database: %w", name, err)
	}
	return nil
}

func (c *Console) control() (Control, error) {
	if !c.cfg.DevMode {
		return nil, ErrDevModeOff
	}
	if c.cfg.Control == nil {
		return nil, ErrNoControl
	}
	return c.cfg.Control, nil
}

var (
	cardPattern    = regexp.MustCompile(`^[0-9]{12,19}$`)
	processPattern = regexp.MustCompile(`^(payments|orders)-[0-9]{1,3}$|^coordinator-c[0-9]{1,3}$`)
)

func validProcess(name string) error {
	if !processPattern.MatchString(name) {
		return errs.E(errs.Invalid, "invalid process").WithFields(errs.FieldError{Field: "name",
			Reason: "a payments, orders or coordinator process of the dev stack, like payments-1 or coordinator-c2"})
	}
	return nil
}

func validDatabase(name string) error {
	if !slices.Contains(Services, name) {
		return errs.E(errs.Invalid, "invalid database").WithFields(errs.FieldError{Field: "name",
			Reason: "a service's database of the dev stack: orders or payments"})
	}
	return nil
}

// validCustomer applies the services' own rule, so the console never sends
// a storm the orders API would refuse.
func validCustomer(id string) error {
	if !customer.ValidID(id) {
		return errs.E(errs.Invalid, "invalid customer id").WithFields(errs.FieldError{Field: "customer_id", Reason: customer.Rule})
	}
	return nil
}
