package jenkins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ErrUnreadable: Jenkins answers in a language ferry cannot read. Only
// LanguageProblem returns it; calls themselves succeed.
var ErrUnreadable = errors.New("jenkins: answers in a language ferry cannot read")

// Causes of an unreadable answer (the cause attribute of
// ferry_jenkins_unreadable_reasons).
const (
	causeForcedLanguage = "forced_language"
	causeUnknownWhy     = "unknown_why"
)

// proseLogEvery spaces repeated log lines about the same cause.
const proseLogEvery = time.Hour

// The English reasons Jenkins core gives for waiting and buildable items
// (hudson.model.Messages Queue.*, Node.*; jenkins.model.Messages
// BlockedBecauseOfBuildInProgress), besides those waitingLabelRes reads.
var englishWhyRes = []*regexp.Regexp{
	regexp.MustCompile(`^In the quiet period\. Expires in .+$`),
	regexp.MustCompile(`^Finished waiting$`),
	regexp.MustCompile(`^Waiting for next available executor$`),
	regexp.MustCompile(`^Jenkins is (?:about|going) to shut down$`),
	regexp.MustCompile(`^\?\?\?$`),
	regexp.MustCompile(`^Restoring the build queue$`),
	regexp.MustCompile(`^Still waiting to schedule task$`),
	regexp.MustCompile(`^Build #\d+ is already in progress`),
	regexp.MustCompile(`^A build is already in progress$`),
	regexp.MustCompile(`^Blocked by `),
	regexp.MustCompile(` is reserved for jobs with matching label expression$`),
	regexp.MustCompile(` is not accepting tasks$`),
	regexp.MustCompile(`^Executor slot already in use$`),
}

// WhyReadable reports whether Why is empty or one of the English sentences
// Jenkins core words queue reasons with, so that WaitingLabel can be
// trusted: a Why in another language names its label in a sentence
// WaitingLabel does not know, and reads as "no label". A reason made of
// several causes (one per line, or joined by "; ") is readable when one
// of them is.
func (q QueueItem) WhyReadable() bool {
	if strings.TrimSpace(q.Why) == "" {
		return true
	}
	for _, line := range strings.Split(q.Why, "\n") {
		for _, part := range strings.Split(line, "; ") {
			part = strings.TrimSpace(part)
			for _, re := range englishWhyRes {
				if re.MatchString(part) {
					return true
				}
			}
			for _, re := range waitingLabelRes {
				if re.MatchString(part) {
					return true
				}
			}
		}
	}
	return false
}

// foreignScript reports whether s has letters of a script English never
// uses: a reason with them is localized whoever queued the item.
func foreignScript(s string) bool {
	for _, r := range s {
		if unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul,
			unicode.Cyrillic, unicode.Greek, unicode.Arabic, unicode.Hebrew, unicode.Thai, unicode.Devanagari) {
			return true
		}
	}
	return false
}

// proseWatch remembers why Jenkins' answers cannot be read, by cause.
type proseWatch struct {
	log    *slog.Logger
	counts metric.Int64Counter

	mu        sync.Mutex
	active    map[string]string // cause → what was seen and how to fix it
	lastLog   map[string]time.Time
	lastClear time.Time
}

func newProseWatch(log *slog.Logger, m metric.Meter) (*proseWatch, error) {
	w := &proseWatch{log: log, active: map[string]string{}, lastLog: map[string]time.Time{}}
	var err error
	if w.counts, err = m.Int64Counter("ferry_jenkins_unreadable_reasons",
		metric.WithDescription("Jenkins answers whose prose ferry cannot read, by cause: forced_language (the Locale plugin forces a language other than English), unknown_why (a queue item worded in no sentence ferry knows).")); err != nil {
		return nil, err
	}
	if _, err = m.Int64ObservableGauge("ferry_jenkins_unreadable",
		metric.WithDescription("1 while Jenkins answers in a language ferry cannot read: queued builds then get no agent (see /readyz)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			v := int64(0)
			if len(w.active) > 0 {
				v = 1
			}
			o.Observe(v)
			return nil
		})); err != nil {
		return nil, err
	}
	return w, nil
}

// set records an unreadable answer; the first of a cause (and again after
// proseLogEvery) is logged at ERROR with the fix.
func (w *proseWatch) set(ctx context.Context, cause, problem string) {
	w.counts.Add(ctx, 1, metric.WithAttributes(attribute.String("cause", cause)))
	now := time.Now()
	w.mu.Lock()
	_, was := w.active[cause]
	w.active[cause] = problem
	logIt := !was && now.Sub(w.lastLog[cause]) >= proseLogEvery
	if logIt {
		w.lastLog[cause] = now
	}
	w.mu.Unlock()
	if logIt {
		w.log.ErrorContext(ctx, problem, "cause", cause)
	}
}

// clear forgets cause once answers show it gone.
func (w *proseWatch) clear(ctx context.Context, cause string) {
	now := time.Now()
	w.mu.Lock()
	_, was := w.active[cause]
	delete(w.active, cause)
	logIt := was && len(w.active) == 0 && now.Sub(w.lastClear) >= proseLogEvery
	if logIt {
		w.lastClear = now
	}
	w.mu.Unlock()
	if logIt {
		w.log.InfoContext(ctx, "Jenkins answers in English again; queued builds can be read", "cause", cause)
	}
}

func (w *proseWatch) problem() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.active) == 0 {
		return nil
	}
	causes := make([]string, 0, len(w.active))
	for c := range w.active {
		causes = append(causes, c)
	}
	sort.Strings(causes)
	msgs := make([]string, len(causes))
	for i, c := range causes {
		msgs[i] = w.active[c]
	}
	return fmt.Errorf("%w: %s", ErrUnreadable, strings.Join(msgs, "; "))
}

// LanguageProblem returns nil unless Jenkins' latest answers show that it
// words its prose in a language ferry cannot read, whatever ferry asks
// for (it sends Accept-Language: en). Then queued builds name the label
// they wait for in sentences ferry does not know, and the provisioner
// gives them no agent. The error, wrapping ErrUnreadable, says what was
// seen and how to fix it. Evidence is:
//
//   - an answer carrying X-Jenkins-Language with another language: the
//     Locale plugin forces it (its "Ignore browser preference and force
//     this language to all users", or a language set for ferry's Jenkins
//     user);
//   - a queue item ferry triggered (one of this client's recent triggers,
//     or one carrying Config.MarkerParam), waiting or buildable, whose
//     reason is none of the English sentences ferry reads (see
//     QueueItem.WhyReadable);
//   - any buildable item whose reason is written in a script English does
//     not use (Chinese, Japanese, Korean, Cyrillic…).
//
// The first evidence of each kind is logged at ERROR, counted in
// ferry_jenkins_unreadable_reasons{cause}, and shown by the
// ferry_jenkins_unreadable gauge until answers are readable again.
func (c *Client) LanguageProblem() error { return c.prose.problem() }

// noteAnswer looks at the Locale plugin's header and the controller's
// session (a restart) on one answer.
func (c *Client) noteAnswer(ctx context.Context, status int, h http.Header) {
	c.session.note(h.Get("X-Jenkins-Session"), time.Now())
	v := strings.TrimSpace(h.Get("X-Jenkins-Language"))
	switch {
	case v != "" && !isEnglish(v):
		c.prose.set(ctx, causeForcedLanguage, fmt.Sprintf(
			"Jenkins answers in %q whatever ferry asks (X-Jenkins-Language: the Locale plugin forces that language), "+
				"so ferry cannot read which label a queued build waits for and gives it no agent; "+
				"to fix it, in Manage Jenkins → Appearance → Locale, untick \"Ignore browser preference and force this language to all users\" "+
				"or set the default language to English, and if users may choose their language, set ferry's Jenkins user's to English", v))
	case status >= 200 && status < 300:
		c.prose.clear(ctx, causeForcedLanguage)
	}
}

func isEnglish(locale string) bool {
	l := strings.ToLower(locale)
	return l == "en" || strings.HasPrefix(l, "en_") || strings.HasPrefix(l, "en-")
}

// noteItems judges the reasons of queue items (see LanguageProblem).
func (c *Client) noteItems(ctx context.Context, items []QueueItem) {
	readableOwn := false
	for _, it := range items {
		if it.Blocked || strings.TrimSpace(it.Why) == "" {
			continue
		}
		own := c.triggered.has(it.ID) || (c.marker != "" && it.Params[c.marker] != "")
		readable := it.WhyReadable()
		switch {
		case own && readable:
			readableOwn = true
		case !readable && (own || it.Buildable && foreignScript(it.Why)):
			why := it.Why
			if len(why) > 120 {
				why = why[:120] + "…"
			}
			c.prose.set(ctx, causeUnknownWhy, fmt.Sprintf(
				"Jenkins words why queue item %d of %s waits as %q, which is not one of the English sentences ferry reads, "+
					"so ferry cannot tell which label it waits for and gives it no agent, although it asks for English (Accept-Language: en); "+
					"to fix it, let that header through any proxy in front of Jenkins, remove a language the Locale plugin forces, "+
					"or start Jenkins with -Duser.language=en", it.ID, it.TaskName, why))
			return
		}
	}
	if readableOwn {
		c.prose.clear(ctx, causeUnknownWhy)
	}
}
