package identity

import (
	"fmt"
	"net/url"
)

// WithPassword returns the PostgreSQL URL dsn with its password replaced by
// password (dsn unchanged when password is empty), so the URL in the
// configuration names the role and the password comes from a secret file.
func WithPassword(dsn, password string) (string, error) {
	if password == "" {
		return dsn, nil
	}
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return "", fmt.Errorf("database URL: want postgres://<role>@host/db when a password file is given")
	}
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String(), nil
}
