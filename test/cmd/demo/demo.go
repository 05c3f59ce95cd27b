package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/deliveries"
	"github.com/ferryci/ferry/pkg/promote/api"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/scmfake"
	"github.com/ferryci/ferry/test/testbed"
)

// What the demo builds and promotes.
const (
	repo       = "acme/app"
	job        = "acme/app"
	pipeline   = "app"
	app        = "web"
	agentLabel = "ferry-agent"
	approver   = "alice@example.com"
	// labelDemo marks the namespaces of a run with its id.
	labelDemo = "ferry.dev/demo"
	// gitHost is where clone URLs point, as on GitHub Enterprise reached
	// by ferry at another address (github.gitURL): kaniko clones over
	// https, and the fake serves the API over plain http on loopback.
	gitHost = "https://github.acme.example"
)

// Options configure a run.
type Options struct {
	// Ferry is the ferry binary to run.
	Ferry string
	// Root is the repository (test/bed/bed.sh, test/.bed/env).
	Root string
	// EnvFile is the bed's env file; "" is Root/test/.bed/env.
	EnvFile string
	// StartBed starts the bed when it is not up (and stops it at the end).
	StartBed bool
	// Out receives the live lines, the timeline and what is taken down.
	Out io.Writer
	// Dir holds ferry's configuration and log; "" is a temporary
	// directory, removed at the end unless the run failed.
	Dir string
	// OnSeen, if set, is called with each stage as it is seen.
	OnSeen func(Seen)
}

// Result is what a run saw and what it made, so a test can check that
// all of it is gone.
type Result struct {
	RunID      string
	SHA        string
	Seen       []Seen
	Namespaces []string
	// FerryPID is the `ferry serve` process.
	FerryPID int
	// RedisAddr and RedisPrefix locate ferry's keys in the bed's Redis.
	RedisAddr, RedisPrefix string
	// Listeners are the addresses ferry, the emulator and the fake served on.
	Listeners []string
	// BedStarted says the demo started the bed (and so stopped it).
	BedStarted bool
}

// demo is one run: the parts it started and what it has seen.
type demo struct {
	o       Options
	res     *Result
	bed     *bed
	out     io.Writer
	dir     string
	sent    time.Time
	jenkins *jenkinsemu.Server
	github  *scmfake.GitHub
	ferry   *server
	cli     cli
	// Credentials made for this run.
	webhookSecret, pipelineToken, personToken string
	// Namespaces of the agents and the two environments.
	nsAgents, nsTest, nsProd string
	// Repositories of the build's image and the promoted one.
	sourceRepo, targetRepo string
}

// Run runs the demo: it sets everything up, sends one push and follows it
// to production, printing a line per stage, then the timeline; whatever
// happens (also when ctx ends: Ctrl-C), it takes down what it started
// before it returns.
func Run(ctx context.Context, o Options) (*Result, error) {
	d := &demo{o: o, out: o.Out, res: &Result{RunID: testbed.RandomSuffix(5)}}
	if d.out == nil {
		d.out = io.Discard
	}
	u := &undo{}
	defer func() {
		if r := recover(); r != nil {
			u.run() // a bug in the demo must not leave ferry or namespaces behind
			panic(r)
		}
	}()
	err := d.run(ctx, u)
	if err != nil && ctx.Err() != nil {
		// Ctrl-C or the time limit, whatever step it interrupted.
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(d.out, "\ninterrupted")
	} else if err != nil && d.ferry != nil {
		fmt.Fprintf(d.out, "\nferry's log (%s) ends:\n%s\n", d.ferry.log, tail(d.ferry.log, 20))
	}
	fmt.Fprintln(d.out, "\ntaking down what the demo started:")
	u.run()
	if u.failed > 0 {
		fmt.Fprintf(d.out, "done, but %d things could not be taken down: see above\n", u.failed)
		if err == nil {
			err = fmt.Errorf("%d things the demo started could not be taken down", u.failed)
		}
	} else {
		fmt.Fprintln(d.out, "done: nothing the demo started is left running")
	}
	if d.dir != "" && o.Dir == "" {
		if err == nil || errors.Is(err, context.Canceled) {
			_ = os.RemoveAll(d.dir)
		} else {
			fmt.Fprintf(d.out, "ferry's configuration and log stay in %s\n", d.dir)
		}
	}
	return d.res, err
}

func (d *demo) run(ctx context.Context, u *undo) error {
	if err := d.setUp(ctx, u); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	if err := d.follow(ctx); err != nil {
		printTimeline(d.out, d.res.Seen)
		return err
	}
	fmt.Fprintln(d.out)
	printTimeline(d.out, d.res.Seen)
	d.whereNext(ctx)
	return nil
}

// setUp brings up the bed (or reuses it), the namespaces, images and
// Deployments a promotion needs, the Jenkins emulator, the GitHub fake and
// ferry.
func (d *demo) setUp(ctx context.Context, u *undo) error {
	var err error
	if d.bed, err = openBed(ctx, d.o, u, d.out); err != nil {
		return err
	}
	d.res.BedStarted = d.bed.started
	id := d.res.RunID
	d.res.SHA = randomHex40()
	d.webhookSecret, d.pipelineToken, d.personToken = randomHex40(), randomHex40(), randomHex40()
	if d.dir = d.o.Dir; d.dir == "" {
		if d.dir, err = os.MkdirTemp("", "ferry-demo-"); err != nil {
			return fmt.Errorf("make a directory for ferry's configuration and log: %w", err)
		}
	}

	base := "demo-" + id
	d.nsAgents, d.nsTest, d.nsProd = base+"-agents", base+"-test", base+"-prod"
	fmt.Fprintf(d.out, "run %s: namespaces %s (agents and image builds), %s and %s (the app's environments)\n", id, d.nsAgents, d.nsTest, d.nsProd)
	d.res.Namespaces = []string{d.nsAgents, d.nsTest, d.nsProd}
	if err := d.bed.namespaces(ctx, u, d.out, id, map[string]testbed.Role{
		d.nsAgents: testbed.AgentsRole, d.nsTest: testbed.PromotionRole, d.nsProd: testbed.PromotionRole,
	}); err != nil {
		return err
	}

	reg := d.bed.registry + "/" + base
	d.sourceRepo, d.targetRepo = reg+"/ci/web", reg+"/release/web"
	agentImage := reg + "/agent:1"
	if _, err := pushImage(ctx, agentImage); err != nil {
		return fmt.Errorf("the agent image: %w", err)
	}
	if err := d.pushSecret(ctx); err != nil {
		return err
	}
	for _, ns := range []string{d.nsTest, d.nsProd} {
		if err := d.bed.deployWeb(ctx, ns, reg+"/web:v0"); err != nil {
			return err
		}
	}
	fmt.Fprintf(d.out, "registry %s: agent image %s; Deployment web runs %s/web:v0 in both environments\n", d.bed.registry, agentImage, reg)

	d.jenkins = jenkinsemu.New(jenkinsemu.Options{})
	u.Cleanup(func() { fmt.Fprintln(d.out, "  stopping the Jenkins emulator"); d.jenkins.Close() })
	params := make([]jenkinsemu.Param, 0, len(config.ReservedParams))
	for _, p := range config.ReservedParams {
		params = append(params, jenkinsemu.Param{Name: p})
	}
	// Builds run until the demo, playing the Jenkinsfile, ends them.
	if err := d.jenkins.AddJob(job, jenkinsemu.JobSpec{Label: agentLabel, Duration: jenkinsemu.Forever, Params: params}); err != nil {
		return fmt.Errorf("add job %s to the Jenkins emulator: %w", job, err)
	}
	d.github = scmfake.NewGitHub(u)
	u.Cleanup(func() { fmt.Fprintln(d.out, "  stopping the GitHub fake") })
	d.github.AddRepo(repo)

	addr, err := freeAddr()
	if err != nil {
		return err
	}
	d.res.RedisAddr, d.res.RedisPrefix = d.bed.redis, base+":"
	cfgPath := filepath.Join(d.dir, "ferry.yaml")
	if err := os.WriteFile(cfgPath, []byte(d.config(addr, agentImage)), 0o600); err != nil {
		return fmt.Errorf("write ferry's configuration: %w", err)
	}
	u.Cleanup(func() { d.forgetKeys(u) })
	if d.ferry, err = startServer(ctx, d.o.Ferry, cfgPath, addr, filepath.Join(d.dir, "ferry.log")); err != nil {
		return err
	}
	u.Cleanup(func() {
		fmt.Fprintf(d.out, "  stopping ferry (pid %d)\n", d.ferry.pid())
		if err := d.ferry.stop(); err != nil {
			u.fail(d.out, "%v", err)
		}
	})
	d.res.FerryPID = d.ferry.pid()
	d.res.Listeners = []string{addr, strings.TrimPrefix(d.jenkins.URL(), "http://"), strings.TrimPrefix(d.github.URL(), "http://")}
	d.cli = cli{binary: d.o.Ferry, env: []string{"FERRY_URL=" + d.ferry.url}}
	fmt.Fprintf(d.out, "ferry %s (pid %d, store: the bed's Redis under %q, config and log in %s)\n", d.ferry.url, d.ferry.pid(), d.res.RedisPrefix, d.dir)
	fmt.Fprintf(d.out, "Jenkins emulator %s (job %s, label %s); GitHub fake %s (repository %s, webhook to ferry)\n\n",
		d.jenkins.URL(), job, agentLabel, d.github.URL(), repo)
	return nil
}

// pushSecret is the registry credential only the kaniko pods mount.
func (d *demo) pushSecret(ctx context.Context) error {
	auth, err := json.Marshal(map[string]any{"auths": map[string]any{d.bed.registry: map[string]string{"auth": "ZGVtbzpkZW1v"}}})
	if err != nil {
		return err
	}
	_, err = d.bed.admin.CoreV1().Secrets(d.nsAgents).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "registry-push"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: auth},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create the push Secret in %s: %w", d.nsAgents, err)
	}
	return nil
}

// forgetKeys deletes ferry's keys of this run from the bed's Redis, which
// other runs share.
func (d *demo) forgetKeys(u *undo) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: d.res.RedisAddr})
	defer rdb.Close()
	n := 0
	iter := rdb.Scan(ctx, 0, d.res.RedisPrefix+"*", 500).Iterator()
	for iter.Next(ctx) {
		if rdb.Del(ctx, iter.Val()).Err() == nil {
			n++
		}
	}
	if err := iter.Err(); err != nil {
		u.fail(d.out, "delete ferry's keys %s* from Redis: %v", d.res.RedisPrefix, err)
		return
	}
	fmt.Fprintf(d.out, "  deleted ferry's %d keys (%s*) from the bed's Redis\n", n, d.res.RedisPrefix)
}

// config is ferry's configuration for the run: the bed's Redis, the
// emulator, the GitHub fake, agents and image builds in the agents'
// namespace, and app web promoted from test to production (with approval),
// each verified by a Job.
func (d *demo) config(listen, agentImage string) string {
	personHash := sha256.Sum256([]byte(d.personToken))
	verify := fmt.Sprintf(`verify:
            job:
              timeout: 2m
              template:
                backoffLimit: 0
                template:
                  metadata: {annotations: {%s: 300ms}}
                  spec:
                    restartPolicy: Never
                    nodeSelector: {%s: %s}
                    tolerations: [{key: %s, operator: Equal, value: %s, effect: NoSchedule}]
                    containers: [{name: smoke, image: %s/smoke:1}]`,
		testbed.StartDelayAnnotation, testbed.VirtualNodeLabel, testbed.VirtualNodeLabelValue,
		testbed.VirtualNodeTaintKey, testbed.VirtualNodeTaintValue, strings.TrimSuffix(d.sourceRepo, "/ci/web"))
	kubeconfig := d.bed.env.Get(testbed.KeyKubeconfigFerry)
	return fmt.Sprintf(`# ferry for the demo run %[1]s (test/cmd/demo).
server:
  listen: %[2]s
  shutdownTimeout: 5s
store:
  redis:
    addr: %[3]s
    prefix: "%[4]s"
jenkins:
  url: %[5]s/
  user: %[6]s
  apiToken: %[7]s
  timeout: 5s
github:
  webhookSecrets: [%[8]s]
  token: %[9]s
  apiURL: %[10]s
  gitURL: %[30]s
dispatch:
  retryInitial: 100ms
  retryMax: 2s
  statusInterval: 500ms
telemetry:
  logFormat: json
agents:
  enabled: true
  namespace: %[11]s
  kubeconfig: %[12]s
  resync: 500ms
  leaderElection:
    enabled: true
    leaseName: ferry-provisioner
    leaseDuration: 4s
    renewDeadline: 3s
    retryPeriod: 500ms
  templates:
    - name: default
      labels: [%[13]s]
      image: %[14]s
      podAnnotations: {%[15]s: 500ms}
      eci:
        specs: ["2-4Gi", "ecs.c6.large"]
        spotStrategy: SpotAsPriceGo
        vSwitches: [vsw-bp1h7zone0h, vsw-bp1i7zone0i]
        autoImageCache: true
images:
  enabled: true
  pushSecret: registry-push
  destinations: [%[16]s]
  kanikoImage: %[17]s/kaniko-project/executor:v1.23.2
  timeout: 5m
  keep: 1m
promotion:
  enabled: true
  apiToken: %[18]s
  auth:
    tokens:
      - name: %[19]s
        sha256: %[20]s
        roles: [{apps: [%[21]s], environments: ["*"], verbs: [get, approve, reject, rollback]}]
  kubeconfig: %[12]s
  resync: 500ms
  leaderElection: {enabled: false}
  apps:
    - name: %[21]s
      source: %[22]s
      target: %[23]s
      tags: ["{{short_commit}}"]
      provider: github
      repo: %[24]s
      environments:
        - name: test
          namespace: %[25]s
          deployments: [web]
          rolloutTimeout: 2m
          %[27]s
        - name: production
          namespace: %[26]s
          deployments: [web]
          approval: true
          rolloutTimeout: 2m
          %[27]s
pipelines:
  - name: %[28]s
    provider: github
    repo: %[24]s
    events: [push]
    job: %[29]s
`, d.res.RunID, listen, d.bed.redis, d.res.RedisPrefix, d.jenkins.URL(), jenkinsemu.DefaultUser.Name, jenkinsemu.DefaultUser.Token,
		d.webhookSecret, scmfake.GitHubToken, d.github.EnterpriseURL(),
		d.nsAgents, kubeconfig, agentLabel, agentImage, testbed.StartDelayAnnotation,
		d.sourceRepo, d.bed.registry, d.pipelineToken, approver, hex.EncodeToString(personHash[:]), app,
		d.sourceRepo, d.targetRepo, repo, d.nsTest, d.nsProd, verify, pipeline, job, gitHost)
}

// pipelineClient reads promotions with the pipeline's token.
func (d *demo) pipelineClient() *api.Client {
	return &api.Client{BaseURL: d.ferry.url, Token: d.pipelineToken}
}

// deliveriesClient reads ferry's delivery log (the promotion token serves
// it when deliveries.apiToken is unset).
func (d *demo) deliveriesClient() *deliveries.Client {
	return &deliveries.Client{BaseURL: d.ferry.url, Token: d.pipelineToken}
}

// randomHex40 is 40 random hex digits: a commit id, or a credential.
func randomHex40() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freeAddr is a free loopback address for ferry to listen on.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}
