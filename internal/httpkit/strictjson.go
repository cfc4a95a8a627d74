package httpkit

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/payonce/payonce/internal/errs"
)

// CheckJSONText refuses JSON that is valid but odd in ways Go's decoder
// would silently accept, each with a 400 problem naming what to fix:
//
//   - bytes that are not UTF-8 (the decoder would turn them into U+FFFD,
//     so two different requests would read the same);
//   - a string holding NUL (PostgreSQL text cannot store it: a 500 later)
//     or U+FFFD (the sign of text already broken on the way, and what a
//     lone surrogate escape such as "\ud800" decodes to);
//   - two keys of one object equal up to case ({"amount":1,"AMOUNT":700}):
//     the decoder matches field names case-insensitively and keeps the
//     last, so a proxy or log that reads the first sees another request.
//
// It only judges what parses; a syntax error is left to the decoder, whose
// message says where it is.
func CheckJSONText(body []byte) error {
	if !utf8.Valid(body) {
		return errs.E(errs.Invalid, "request body is not valid UTF-8").WithType("malformed-json")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	// One frame per open object or array: for objects, the folded keys seen
	// so far and whether the next string token is a key.
	type frame struct {
		object    bool
		expectKey bool
		keys      map[string]bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // end of input, or a syntax error the decoder reports
		}
		top := (*frame)(nil)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		isKey := top != nil && top.object && top.expectKey
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				if top != nil && top.object {
					top.expectKey = true
				}
				stack = append(stack, &frame{object: true, expectKey: true, keys: map[string]bool{}})
			case '[':
				if top != nil && top.object {
					top.expectKey = true
				}
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if err := checkText(v); err != nil {
				return err
			}
			if isKey {
				folded := foldKey(v)
				if top.keys[folded] {
					return errs.E(errs.Invalid, "request has two keys that differ only in case").WithType("malformed-json").
						WithFields(errs.FieldError{Field: v, Reason: "duplicate key (keys are matched case-insensitively)"})
				}
				top.keys[folded] = true
				top.expectKey = false
				continue
			}
		}
		if top != nil && top.object {
			top.expectKey = true
		}
	}
}

func checkText(s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return errs.E(errs.Invalid, "a string holds a NUL character").WithType("malformed-json")
	}
	if strings.ContainsRune(s, utf8.RuneError) {
		return errs.E(errs.Invalid, "a string holds U+FFFD or an unpaired surrogate escape").WithType("malformed-json")
	}
	return nil
}

// foldKey maps a key to one representative of its case-folding orbit, the
// way encoding/json compares field names (so "K", "k" and the Kelvin sign
// fold together).
func foldKey(s string) string {
	var b strings.Builder
	for _, r := range s {
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		b.WriteRune(min)
	}
	return b.String()
}
