package httpkit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/payonce/payonce/internal/errs"
)

// DefaultMaxBodyBytes is the request body limit when a service sets none:
// payment and order requests are small, so anything bigger is a mistake or
// an attack, refused before it is read into memory.
const DefaultMaxBodyBytes int64 = 64 << 10

// LimitBody caps every request body at maxBytes. Reading past the cap fails
// with *http.MaxBytesError, which DecodeJSON reports as errs.TooLarge.
func LimitBody(maxBytes int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBytes {
			ErrorEncoder(r.Context(), tooLarge(maxBytes), w)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBytes)
		next.ServeHTTP(w, r)
	})
}

// DecodeJSON reads exactly one JSON object from r's body into v. It refuses
// a non-JSON content type, unknown fields, trailing data, bodies over the
// limit set by LimitBody and valid-but-odd JSON (CheckJSONText), each with an errs.Invalid or errs.TooLarge error
// whose detail tells the client what to fix.
func DecodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return errs.Errorf(errs.Invalid, "content type %q is not application/json", ct).WithType("unsupported-media-type")
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return tooLarge(tooBig.Limit)
		}
		return errs.Wrap(errs.Invalid, "could not read request body", err)
	}
	return DecodeJSONBytes(body, v)
}

// DecodeJSONBytes is DecodeJSON for a body already read, for callers such as
// the idempotency middleware that must fingerprint the bytes first.
func DecodeJSONBytes(body []byte, v any) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return errs.E(errs.Invalid, "request body is empty; expected a JSON object").WithType("malformed-json")
	}
	if trimmed[0] != '{' {
		return errs.E(errs.Invalid, "request body must be a JSON object").WithType("malformed-json")
	}
	if err := CheckJSONText(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return errs.E(errs.Invalid, "request body has data after the JSON object").WithType("malformed-json")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errs.E(errs.Invalid, "request body has data after the JSON object").WithType("malformed-json")
	}
	return nil
}

func jsonError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return errs.Errorf(errs.Invalid, "malformed JSON at byte %d: %v", syntax.Offset, syntax).WithType("malformed-json")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(body)"
		}
		return errs.E(errs.Invalid, "a field has the wrong JSON type").WithType("malformed-json").
			WithFields(errs.FieldError{Field: field, Reason: fmt.Sprintf("must be a JSON %s", jsonKind(typ.Type.Kind().String()))})
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errs.E(errs.Invalid, "malformed JSON: unexpected end of body").WithType("malformed-json")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return errs.E(errs.Invalid, "request has a field this endpoint does not accept").WithType("malformed-json").
			WithFields(errs.FieldError{Field: field, Reason: "unknown field"})
	default:
		return errs.Wrap(errs.Invalid, "malformed JSON", err).WithType("malformed-json")
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "number"
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	default:
		return "object"
	}
}

func tooLarge(limit int64) error {
	return errs.Errorf(errs.TooLarge, "request body exceeds the limit of %d bytes", limit)
}

// PageQuery reads the list parameters every list endpoint takes: limit (a
// positive integer; 0 when absent, for the service's default) and cursor.
func PageQuery(r *http.Request) (limit int, cursor string, err error) {
	q := r.URL.Query()
	if s := q.Get("limit"); s != "" {
		n, convErr := strconv.Atoi(s)
		if convErr != nil || n < 1 {
			return 0, "", errs.E(errs.Invalid, "limit must be a positive integer").
				WithFields(errs.FieldError{Field: "limit", Reason: "1 to 100"})
		}
		limit = n
	}
	return limit, q.Get("cursor"), nil
}
