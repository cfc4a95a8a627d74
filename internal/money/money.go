// Package money represents amounts the only safe way for payments: an
// integer count of the currency's minor unit (cents for USD, yen for JPY)
// with an ISO 4217 currency code. Floats never appear, because 0.1 + 0.2 is
// not 0.3 in binary floating point and a ledger must add up exactly.
package money

import (
	"fmt"

	"github.com/payonce/payonce/internal/errs"
)

// MaxAmount bounds any single amount at 10^12 minor units (ten billion
// dollars): far above a real payment, far below int64 overflow when a
// service sums many of them.
const MaxAmount int64 = 1_000_000_000_000

// Currency is an ISO 4217 alphabetic code such as "EUR".
type Currency string

// minorUnits maps each accepted ISO 4217 code to its number of decimal
// places. The list holds the currencies in active use for card payments; a
// fork adds the ones it needs.
var minorUnits = map[Currency]int{
	"AED": 2, "ARS": 2, "AUD": 2, "BGN": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2,
	"CLP": 0, "CNY": 2, "COP": 2, "CZK": 2, "DKK": 2, "EGP": 2, "EUR": 2, "GBP": 2,
	"HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "ISK": 0, "JOD": 3, "JPY": 0,
	"KES": 2, "KRW": 0, "KWD": 3, "MAD": 2, "MXN": 2, "MYR": 2, "NGN": 2, "NOK": 2,
	"NZD": 2, "OMR": 3, "PEN": 2, "PHP": 2, "PKR": 2, "PLN": 2, "QAR": 2, "RON": 2,
	"SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TND": 3, "TRY": 2, "TWD": 2, "UAH": 2,
	"USD": 2, "VND": 0, "ZAR": 2,
}

// MinorUnits returns the number of decimal places of c and whether c is a
// currency payonce accepts.
func (c Currency) MinorUnits() (int, bool) {
	n, ok := minorUnits[c]
	return n, ok
}

// Validate reports whether c is an accepted ISO 4217 code.
func (c Currency) Validate() error {
	if _, ok := minorUnits[c]; !ok {
		return errs.Errorf(errs.Invalid, "currency %q is not a supported ISO 4217 code", string(c)).
			WithFields(errs.FieldError{Field: "currency", Reason: "unknown ISO 4217 currency code"})
	}
	return nil
}

// Money is an amount of a currency in minor units.
type Money struct {
	Amount   int64    `json:"amount"`
	Currency Currency `json:"currency"`
}

// New validates amount and currency for a payment: the amount must be
// positive and at most MaxAmount.
func New(amount int64, currency Currency) (Money, error) {
	m := Money{Amount: amount, Currency: currency}
	return m, m.Validate()
}

// Validate checks that m is a positive amount of an accepted currency.
func (m Money) Validate() error {
	var fields []errs.FieldError
	if m.Amount <= 0 {
		fields = append(fields, errs.FieldError{Field: "amount", Reason: "must be a positive integer number of minor units"})
	} else if m.Amount > MaxAmount {
		fields = append(fields, errs.FieldError{Field: "amount", Reason: fmt.Sprintf("must be at most %d minor units", MaxAmount)})
	}
	if _, ok := minorUnits[m.Currency]; !ok {
		fields = append(fields, errs.FieldError{Field: "currency", Reason: "unknown ISO 4217 currency code"})
	}
	if len(fields) > 0 {
		return errs.E(errs.Invalid, "invalid amount").WithFields(fields...)
	}
	return nil
}

// String formats m for people, e.g. "12.50 EUR"; never parse it back.
func (m Money) String() string {
	units, ok := minorUnits[m.Currency]
	if !ok || units == 0 {
		return fmt.Sprintf("%d %s", m.Amount, m.Currency)
	}
	div := int64(1)
	for range units {
		div *= 10
	}
	sign := ""
	a := m.Amount
	if a < 0 {
		sign, a = "-", -a
	}
	return fmt.Sprintf("%s%d.%0*d %s", sign, a/div, units, a%div, m.Currency)
}
