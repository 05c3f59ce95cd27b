package jenkins

import (
	"strings"
	"sync"
	"time"
)

// sessionWatch follows the controller's X-Jenkins-Session header, a random
// value Jenkins draws at every start (Jenkins.SESSION_HASH): when it
// changes, the controller restarted, and whatever lived only in its memory
// — queue items a crash left no queue.xml for, builds that could not
// resume — may be gone.
type sessionWatch struct {
	mu sync.Mutex
	id string
	// changed is when this client first saw a session other than the one
	// before it (zero: no restart seen).
	changed time.Time
}

func (w *sessionWatch) note(h string, now time.Time) {
	h = strings.TrimSpace(h)
	if h == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.id != "" && w.id != h {
		w.changed = now
	}
	w.id = h
}

// RestartedSince reports whether this client saw the controller restart
// (its X-Jenkins-Session change) after t. It knows only what this process
// saw: a restart before the client's first answer, or while this process
// was down, is not known.
func (c *Client) RestartedSince(t time.Time) bool {
	c.session.mu.Lock()
	defer c.session.mu.Unlock()
	return !c.session.changed.IsZero() && c.session.changed.After(t)
}
