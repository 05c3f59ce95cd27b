package redisstore

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// recordReq is one RecordDelivery waiting for the record batcher.
type recordReq struct {
	keys []string
	args []any
	done chan error
}

// recordBatcher group-commits concurrent delivery records the way batcher
// does enqueues: whatever is waiting goes in one pipeline, so under load
// they share the round trip and, with appendfsync always, the fsync.
type recordBatcher struct {
	client redis.UniversalClient
	reqs   chan *recordReq
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

func newRecordBatcher(client redis.UniversalClient) *recordBatcher {
	b := &recordBatcher{client: client, reqs: make(chan *recordReq), stop: make(chan struct{})}
	b.wg.Add(1)
	go b.loop()
	return b
}

func (b *recordBatcher) do(ctx context.Context, keys []string, args ...any) error {
	r := &recordReq{keys: keys, args: args, done: make(chan error, 1)}
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

func (b *recordBatcher) loop() {
	defer b.wg.Done()
	for {
		var first *recordReq
		select {
		case first = <-b.reqs:
		case <-b.stop:
			return
		}
		batch := []*recordReq{first}
	more:
		for len(batch) < maxBatch {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		b.send(batch)
	}
}

func (b *recordBatcher) send(batch []*recordReq) {
	ctx := context.Background()
	// The script is loaded once; NOSCRIPT (a restarted Redis) falls back
	// to EVAL for each record, as Script.Run does.
	cmds := make([]*redis.Cmd, len(batch))
	_, _ = b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range batch {
			cmds[i] = recordScript.EvalSha(ctx, p, r.keys, r.args...)
		}
		return nil
	})
	for i, r := range batch {
		err := cmds[i].Err()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			err = recordScript.Run(ctx, b.client, r.keys, r.args...).Err()
		}
		r.done <- err
	}
}

func (b *recordBatcher) close() {
	b.once.Do(func() { close(b.stop) })
	b.wg.Wait()
}
