package orders

import (
	"testing"

	"github.com/payonce/payonce/internal/errs"
)

func TestStateMachine(t *testing.T) {
	all := []Status{PendingPayment, Paid, PaymentFailed, Cancelled}
	legal := map[[2]Status]bool{
		{PendingPayment, Paid}: true, {PendingPayment, PaymentFailed}: true, {PendingPayment, Cancelled}: true,
	}
	for _, from := range all {
		for _, to := range all {
			if got := from.CanMoveTo(to); got != legal[[2]Status{from, to}] {
				t.Errorf("%s -> %s allowed=%v", from, to, got)
			}
		}
	}
}

func TestPriceComputesTheTotalFromTheCatalog(t *testing.T) {
	s := &service{catalog: DemoCatalog}
	o, err := s.price(CreateOrderRequest{ID: "o1", CustomerID: "c", Currency: "EUR", Card: "4242424242424242",
		Lines: []LineRequest{{SKU: "espresso", Quantity: 2}, {SKU: "cup", Quantity: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(2*2450 + 3*1200); o.Total != want {
		t.Fatalf("total %d, want %d", o.Total, want)
	}
	if o.Lines[0].UnitPrice != 2450 || o.Lines[1].Amount != 3600 {
		t.Fatalf("lines %+v", o.Lines)
	}
}

func TestPriceRefusesBadOrders(t *testing.T) {
	s := &service{catalog: DemoCatalog}
	base := func() CreateOrderRequest {
		return CreateOrderRequest{ID: "o1", CustomerID: "c", Currency: "EUR", Card: "4242424242424242", Lines: []LineRequest{{SKU: "cup", Quantity: 1}}}
	}
	many := make([]LineRequest, MaxLines+1)
	for i := range many {
		many[i] = LineRequest{SKU: "cup", Quantity: 1}
	}
	huge := make([]LineRequest, MaxLines)
	for i := range huge {
		huge[i] = LineRequest{SKU: "grinder", Quantity: MaxQuantity}
	}
	cases := map[string]struct {
		mutate func(*CreateOrderRequest)
		field  string
	}{
		"no lines":             {func(r *CreateOrderRequest) { r.Lines = nil }, "lines"},
		"too many lines":       {func(r *CreateOrderRequest) { r.Lines = many }, "lines"},
		"unknown sku":          {func(r *CreateOrderRequest) { r.Lines[0].SKU = "unicorn" }, "lines[0].sku"},
		"zero quantity":        {func(r *CreateOrderRequest) { r.Lines[0].Quantity = 0 }, "lines[0].quantity"},
		"negative quantity":    {func(r *CreateOrderRequest) { r.Lines[0].Quantity = -3 }, "lines[0].quantity"},
		"huge quantity":        {func(r *CreateOrderRequest) { r.Lines[0].Quantity = 1 << 40 }, "lines[0].quantity"},
		"unknown currency":     {func(r *CreateOrderRequest) { r.Currency = "XXX" }, "currency"},
		"not sold in currency": {func(r *CreateOrderRequest) { r.Currency = "JPY"; r.Lines[0].SKU = "descaler" }, "lines[0].sku"},
		"no customer":          {func(r *CreateOrderRequest) { r.CustomerID = "" }, "customer_id"},
		"bad card":             {func(r *CreateOrderRequest) { r.Card = "12" }, "card"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			req := base()
			tc.mutate(&req)
			_, err := s.price(req)
			e := errs.As(err)
			if e == nil || e.Kind != errs.Invalid {
				t.Fatalf("err %v, want invalid", err)
			}
			found := false
			for _, f := range e.Fields {
				found = found || f.Field == tc.field
			}
			if !found {
				t.Fatalf("fields %+v do not name %s", e.Fields, tc.field)
			}
		})
	}
	// 50 lines of 1000 grinders is 9.45e9 minor units: allowed, and far
	// below the cap; the cap itself is enforced while summing.
	req := base()
	req.Lines = huge
	if o, err := s.price(req); err != nil || o.Total != int64(MaxLines)*MaxQuantity*18900 {
		t.Fatalf("large order: %v %v", o.Total, err)
	}
}
