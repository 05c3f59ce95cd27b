package config

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"
)

// UI configures the web UI ferry serves under /ui/ on server.listen, on
// every replica alike.
type UI struct {
	// Enabled serves /ui/ (default true). Nothing is shown to anyone who
	// has not signed in unless AnonymousRead is set.
	Enabled bool `json:"enabled"`
	// AnonymousRead shows the activity, agents and promotions pages to
	// visitors who have not signed in (actions still need a sign-in).
	AnonymousRead bool `json:"anonymousRead"`
	// SessionKey encrypts and signs the session cookie (AES-256-GCM): at
	// least 32 bytes, given as 64 hex digits or base64; better through
	// FERRY_UI_SESSION_KEY or SessionKeyFile. Every replica needs the same
	// key for a session to be valid on all of them. Empty: a random key
	// per process (sessions end on restart and hold only on the replica
	// that made them).
	SessionKey     string `json:"sessionKey"`
	SessionKeyFile string `json:"sessionKeyFile"`
	// SessionTTL is how long a sign-in lasts (default 8h).
	SessionTTL Duration `json:"sessionTTL"`
	// SecureCookie marks the session cookie Secure even when ferry itself
	// serves plain HTTP (TLS ends at an Ingress); requests over TLS, or
	// with X-Forwarded-Proto: https, get it regardless.
	SecureCookie bool `json:"secureCookie"`
	// Refresh is how often an open page asks for fresh content (default 3s).
	Refresh Duration `json:"refresh"`
}

func defaultUI() UI {
	return UI{Enabled: true, SessionTTL: Duration{Duration: 8 * time.Hour}, Refresh: Duration{Duration: 3 * time.Second}}
}

// UISessionKey decodes ui.sessionKey: nil when unset.
func (u UI) UISessionKey() ([]byte, error) {
	if u.SessionKey == "" {
		return nil, nil
	}
	if b, err := hex.DecodeString(u.SessionKey); err == nil && len(b) >= 32 {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(u.SessionKey); err == nil && len(b) >= 32 {
			return b, nil
		}
	}
	return nil, fmt.Errorf("ui.sessionKey: must be at least 32 random bytes as hex (64+ digits) or base64 (e.g. openssl rand -hex 32)")
}

func (u UI) validate() []error {
	var errs []error
	add := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("ui.%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if u.SessionKey != "" && u.SessionKeyFile != "" {
		add("sessionKey", "set sessionKey or sessionKeyFile, not both")
	}
	if _, err := u.UISessionKey(); err != nil {
		errs = append(errs, err)
	}
	if u.SessionTTL.Duration < time.Minute || u.SessionTTL.Duration > 30*24*time.Hour {
		add("sessionTTL", "is %s, must be between 1m and 720h (default 8h)", u.SessionTTL.Duration)
	}
	if u.Refresh.Duration < 500*time.Millisecond || u.Refresh.Duration > 5*time.Minute {
		add("refresh", "is %s, must be between 500ms and 5m (default 3s)", u.Refresh.Duration)
	}
	return errs
}

func (u UI) warnings() []string {
	if u.Enabled && u.SessionKey == "" {
		return []string{"ui.sessionKey is not set: the web UI's sign-ins end when this process restarts and hold only on this replica (set FERRY_UI_SESSION_KEY, the same on every replica)"}
	}
	return nil
}
