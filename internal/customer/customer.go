// Package customer holds the one rule for customer ids, checked at the API
// of orders and payments.
//
// A customer id is chosen by the API caller, and it ends up in places with
// rules of their own: the name of the customer's lock at the coordinator
// (letters, digits and "._:-", at most 200 characters), a URL path segment
// (/v1/customers/{id}/orders), a ring key, a PostgreSQL text column. An id
// accepted by the API but refused further down ("alice smith", "a/b") used
// to be answered 503 and left its payment pending forever, and enough such
// rows kept the recovery worker busy for everyone. So the API accepts only
// ids every one of those places accepts:
//
//	1 to 64 characters: ASCII letters, digits, '.', '_' and '-',
//	starting with a letter or a digit.
//
// The lock name is "customer:<caller>:<customer id>" (callers are at most
// 64 characters of the same alphabet, internal/apikey), at most 138
// characters: always a valid lock name.
package customer

import "github.com/payonce/payonce/internal/errs"

// MaxIDLength is the longest customer id accepted.
const MaxIDLength = 64

// Rule says the rule in words, for problem documents and docs.
const Rule = "1 to 64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"

// ValidID reports whether id follows the rule.
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// CheckID returns the field error for a customer id that breaks the rule,
// or nil; field names where the id came from ("customer_id", "id").
func CheckID(field, id string) *errs.FieldError {
	if ValidID(id) {
		return nil
	}
	return &errs.FieldError{Field: field, Reason: Rule}
}
