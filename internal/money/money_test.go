package money_test

import (
	"testing"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/money"
)

func TestValidate(t *testing.T) {
	cases := []struct {
		m     money.Money
		ok    bool
		field string
	}{
		{money.Money{Amount: 1250, Currency: "EUR"}, true, ""},
		{money.Money{Amount: 1, Currency: "JPY"}, true, ""},
		{money.Money{Amount: money.MaxAmount, Currency: "USD"}, true, ""},
		{money.Money{Amount: 0, Currency: "EUR"}, false, "amount"},
		{money.Money{Amount: -5, Currency: "EUR"}, false, "amount"},
		{money.Money{Amount: money.MaxAmount + 1, Currency: "EUR"}, false, "amount"},
		{money.Money{Amount: 100, Currency: "XXX"}, false, "currency"},
		{money.Money{Amount: 100, Currency: "eur"}, false, "currency"},
		{money.Money{Amount: 100, Currency: ""}, false, "currency"},
	}
	for _, tc := range cases {
		err := tc.m.Validate()
		if tc.ok {
			if err != nil {
				t.Errorf("%+v: %v", tc.m, err)
			}
			continue
		}
		e := errs.As(err)
		if e == nil || e.Kind != errs.Invalid || len(e.Fields) == 0 || e.Fields[0].Field != tc.field {
			t.Errorf("%+v: err %v, want invalid naming %s", tc.m, err, tc.field)
		}
	}
}

func TestString(t *testing.T) {
	for m, want := range map[money.Money]string{
		{Amount: 1250, Currency: "EUR"}: "12.50 EUR",
		{Amount: 5, Currency: "USD"}:    "0.05 USD",
		{Amount: 1500, Currency: "JPY"}: "1500 JPY",
		{Amount: 1234, Currency: "KWD"}: "1.234 KWD",
		{Amount: -250, Currency: "EUR"}: "-2.50 EUR",
	} {
		if got := m.String(); got != want {
			t.Errorf("%+v: %q, want %q", m, got, want)
		}
	}
}
