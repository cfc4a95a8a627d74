package identity

import (
	"fmt"
	"net/url"
	"os"
	"strings"
)

// Secret returns the value of the variable key, or, when key_FILE is set
// instead, the content of that file without its trailing newline. Secrets
// reach containers as files (compose `secrets:`, Kubernetes secret
// volumes), so they never appear in `docker inspect`, a process listing or
// the compose file; the plain variable stays for tests and local runs.
func Secret(getenv func(string) string, key string) (string, error) {
	v, file := getenv(key), getenv(key+"_FILE")
	switch {
	case v != "" && file != "":
		return "", fmt.Errorf("%s and %s_FILE are both set: set one", key, key)
	case file == "":
		return v, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s_FILE: %w", key, err)
	}
	return strings.TrimRight(string(data), "\r\n"), nil
}

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
