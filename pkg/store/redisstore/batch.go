package redisstore

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxBatch bounds how many enqueues share one pipeline.
const maxBatch = 128

// enqueueReq is one Enqueue waiting for the batcher.
type enqueueReq struct {
	keys    []string
	payload []byte
	done    chan error // nil: stored; redis.Nil: duplicate
}

// batcher group-commits concurrent enqueues: it takes the first waiting
// request, adds whatever others are already waiting (never waiting for
// more, so a lone request is not delayed), and sends them all in one
// pipeline. Each script still runs atomically in Redis, in order, so two
// deliveries of one key in a batch still yield one entry; what is shared is
// the round trip and, with appendfsync always, the fsync Redis does once
// per batch of replies.
type batcher struct {
	s      *Store
	reqs   chan *enqueueReq
	stop   chan struct{}
	closed sync.Once
	wg     sync.WaitGroup
}

func newBatcher(s *Store) *batcher {
	b := &batcher{s: s, reqs: make(chan *enqueueReq), stop: make(chan struct{})}
	b.wg.Add(1)
	go b.loop()
	return b
}

// do hands one enqueue to the batcher and waits for its result. If ctx
// ends while the batch is in flight the outcome is unknown to the caller,
// as for any cancelled write.
func (b *batcher) do(ctx context.Context, keys []string, payload []byte) error {
	r := &enqueueReq{keys: keys, payload: payload, done: make(chan error, 1)}
	select {
	case b.reqs <- r:
	case <-b.stop:
		return redis.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *batcher) loop() {
	defer b.wg.Done()
	batch := make([]*enqueueReq, 0, maxBatch)
	for {
		select {
		case r := <-b.reqs:
			batch = append(batch[:0], r)
		case <-b.stop:
			return
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		b.run(batch)
	}
}

// run sends one batch; scripts Redis no longer knows (after a restart) are
// sent again as EVAL.
func (b *batcher) run(batch []*enqueueReq) {
	timeout := b.s.batchTimeout
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmds := b.pipeline(ctx, batch, true)
	var again []*enqueueReq
	var againIdx []int
	for i, c := range cmds {
		if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			again = append(again, batch[i])
			againIdx = append(againIdx, i)
		}
	}
	if len(again) > 0 {
		for j, c := range b.pipeline(ctx, again, false) {
			cmds[againIdx[j]] = c
		}
	}
	for i, r := range batch {
		r.done <- cmds[i].Err()
	}
}

func (b *batcher) pipeline(ctx context.Context, batch []*enqueueReq, sha bool) []*redis.Cmd {
	cmds := make([]*redis.Cmd, len(batch))
	_, _ = b.s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range batch {
			if sha {
				cmds[i] = enqueueScript.EvalSha(ctx, p, r.keys, b.s.dedupSeconds, r.payload)
			} else {
				cmds[i] = enqueueScript.Eval(ctx, p, r.keys, b.s.dedupSeconds, r.payload)
			}
		}
		return nil
	})
	// Each command carries its own error, a connection failure included.
	return cmds
}

func (b *batcher) close() {
	b.closed.Do(func() { close(b.stop) })
	b.wg.Wait()
}

// batchTimeoutFor bounds one pipeline: a write and a read per command is
// what the client's own timeouts allow one command.
func batchTimeoutFor(read, write time.Duration) time.Duration {
	return read + write
}
