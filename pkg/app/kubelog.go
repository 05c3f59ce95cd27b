package app

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"k8s.io/klog/v2"
)

// kubeLogs is where client-go's logs go. klog's logger is process-wide and
// client-go's goroutines read it without a lock, so it is set once per
// process, to a handler that forwards to the newest runtime's logger:
// setting klog's logger again while an earlier runtime's requests are
// still in flight (tests start several runtimes in one process) is a data
// race.
var kubeLogs struct {
	once sync.Once
	to   atomic.Pointer[slog.Handler]
}

// routeKubeLogs sends client-go's logs to l, under component=kube.
func routeKubeLogs(l *slog.Logger) {
	h := l.With("component", "kube").Handler()
	kubeLogs.to.Store(&h)
	kubeLogs.once.Do(func() { klog.SetSlogLogger(slog.New(forwardHandler{})) })
}

// forwardHandler resolves the current target per record and replays the
// attributes and groups klog added on the way.
type forwardHandler struct {
	ops []func(slog.Handler) slog.Handler
}

func (f forwardHandler) target() slog.Handler {
	h := *kubeLogs.to.Load()
	for _, op := range f.ops {
		h = op(h)
	}
	return h
}

func (f forwardHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return f.target().Enabled(ctx, level)
}

func (f forwardHandler) Handle(ctx context.Context, r slog.Record) error {
	return f.target().Handle(ctx, r)
}

func (f forwardHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return forwardHandler{ops: append(f.ops[:len(f.ops):len(f.ops)], func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs) })}
}

func (f forwardHandler) WithGroup(name string) slog.Handler {
	return forwardHandler{ops: append(f.ops[:len(f.ops):len(f.ops)], func(h slog.Handler) slog.Handler { return h.WithGroup(name) })}
}
