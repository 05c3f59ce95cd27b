package scm

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// LoadToken returns the API token configured either inline (value, usually
// filled from an environment variable) or as a file (a mounted Kubernetes
// Secret). Surrounding whitespace, such as the newline most editors and
// `kubectl create secret --from-file` leave, is trimmed.
//
// Both empty means no token: status reporting is off for that provider and
// ("", nil) is returned. Setting both is a configuration error, as is a
// file that holds only whitespace. Errors name the file but never its
// content.
func LoadToken(value, file string) (string, error) {
	value = strings.TrimSpace(value)
	if file == "" {
		if strings.ContainsAny(value, "\r\n") {
			return "", errors.New("load scm token: the token holds more than one line")
		}
		return value, nil
	}
	if value != "" {
		return "", errors.New("load scm token: both a token and a token file are set; set one")
	}
	b, err := os.ReadFile(file) //nolint:gosec // the operator names the token file
	if err != nil {
		// The *PathError names the file and the cause, not the content.
		return "", fmt.Errorf("load scm token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("load scm token: file %s is empty", file)
	}
	if strings.ContainsAny(tok, "\r\n") {
		// A token never spans lines; a header built from one would be
		// rejected by net/http with an error that could quote it.
		return "", fmt.Errorf("load scm token: file %s holds more than one line", file)
	}
	return tok, nil
}
