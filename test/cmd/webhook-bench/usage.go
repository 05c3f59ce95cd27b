package main

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// usage is a snapshot of the CPU time spent so far by this process (load
// generator and both servers), by redis-server and by the whole machine.
// On a shared machine CPU per request is steadier than requests per second,
// and the machine's remainder says how much others took.
type usage struct {
	at        time.Time
	proc      time.Duration
	redis     time.Duration
	redisOK   bool
	machine   time.Duration
	machineOK bool
}

func snapshot(ctx context.Context, rc *redis.Client) usage {
	u := usage{at: time.Now(), proc: processCPU()}
	u.redis, u.redisOK = redisCPU(ctx, rc)
	u.machine, u.machineOK = machineBusy()
	return u
}

// redisCPU is redis-server's CPU time, its children's (AOF rewrites)
// included.
func redisCPU(ctx context.Context, rc *redis.Client) (time.Duration, bool) {
	info, err := rc.InfoMap(ctx, "cpu").Result()
	if err != nil {
		return 0, false
	}
	var sum float64
	for _, k := range []string{"used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children"} {
		v, err := strconv.ParseFloat(info["CPU"][k], 64)
		if err != nil {
			return 0, false
		}
		sum += v
	}
	return time.Duration(sum * float64(time.Second)), true
}

// account fills res's CPU figures for the run between before and after.
func account(res *Result, before, after usage) {
	wall := after.at.Sub(before.at).Seconds()
	if res.Requests == 0 || wall <= 0 {
		return
	}
	perReq := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(res.Requests) }
	proc := after.proc - before.proc
	res.ProcCPUPerReqUs = perReq(proc)
	res.ProcCores = proc.Seconds() / wall
	var rcpu time.Duration
	if before.redisOK && after.redisOK {
		rcpu = after.redis - before.redis
		res.RedisCPUPerReqUs = perReq(rcpu)
		res.RedisCores = rcpu.Seconds() / wall
	}
	if before.machineOK && after.machineOK {
		// /proc/stat ticks are 10 ms, so a short run's remainder is rough.
		res.OtherCores = max(0, (after.machine-before.machine-proc-rcpu).Seconds()/wall)
	}
}
