package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/imagebuild"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/testbed"
)

// stageTimeout bounds the wait for any one stage.
const stageTimeout = 3 * time.Minute

// see records a stage and prints its line.
func (d *demo) see(st Stage, detail string) {
	s := Seen{Stage: st, After: time.Since(d.sent), Detail: detail}
	d.res.Seen = append(d.res.Seen, s)
	fmt.Fprintln(d.out, s.Line())
	if d.o.OnSeen != nil {
		d.o.OnSeen(s)
	}
}

// await polls look every 100 ms until it reports the stage reached, then
// records it with look's detail.
func (d *demo) await(ctx context.Context, st Stage, look func(context.Context) (string, bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, stageTimeout)
	defer cancel()
	for {
		detail, ok, err := look(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", st, err)
		}
		if ok {
			d.see(st, detail)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not seen within %s (%w)", st, stageTimeout, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// follow sends the push and follows it. The demo plays what has no real
// counterpart here — the agent's connection to Jenkins, the Jenkinsfile's
// steps, kaniko's push and a person's approval — and sees every stage in
// the component that holds it.
func (d *demo) follow(ctx context.Context) error {
	hook := d.github.AddHook(repo, "", d.ferry.url+"/hooks/github", d.webhookSecret)
	fmt.Fprintf(d.out, "GitHub fake delivers a signed push of %s to refs/heads/main (%s)\n", d.res.SHA[:12], repo)
	d.sent = time.Now()
	delivery, err := d.github.Deliver(hook, "push", d.pushPayload())
	if err != nil {
		return fmt.Errorf("deliver the push: %w", err)
	}
	if delivery.StatusCode != http.StatusAccepted {
		return fmt.Errorf("ferry answered the push %d (%s), not 202", delivery.StatusCode, delivery.Status)
	}

	var eventID string
	err = d.await(ctx, StageAccepted, func(ctx context.Context) (string, bool, error) {
		page, err := d.deliveriesClient().List(ctx, store.DeliveryQuery{DeliveryID: delivery.GUID})
		if err != nil || len(page.Deliveries) == 0 || page.Deliveries[0].Outcome != store.DeliveryAccepted {
			return "", false, nil
		}
		c := page.Deliveries[0]
		eventID = c.EventID
		return fmt.Sprintf("%d, event %s, pipeline %s (delivery %s)", c.Status, c.EventID, strings.Join(c.Pipelines, ","), c.DeliveryID), true, nil
	})
	if err != nil {
		return err
	}
	trigger := eventID + "/" + pipeline

	err = d.await(ctx, StageQueued, func(context.Context) (string, bool, error) {
		for _, q := range d.jenkins.QueueItems() {
			if q.Params[config.ParamTriggerID] == trigger {
				return fmt.Sprintf("job %s, queue item %d, waiting for an agent (Jenkins: %q)", q.Job, q.ID, q.Why), true, nil
			}
		}
		return "", false, nil
	})
	if err != nil {
		return err
	}

	var agent string
	err = d.await(ctx, StageAgentPod, func(ctx context.Context) (string, bool, error) {
		pod, node, ok := d.runningPod(ctx, eci.LabelAgent)
		if !ok {
			return "", false, nil
		}
		agent = pod.Labels[eci.LabelAgent]
		return fmt.Sprintf("pod %s on %s (zone %s): %s", pod.Name, node.Name, node.Labels[testbed.ZoneLabel], eciAnnotations(pod)), true, nil
	})
	if err != nil {
		return err
	}
	// The agent in the pod connects to Jenkins with the JNLP secret ferry
	// gave it.
	if err := d.jenkins.ConnectAgent(agent, d.jenkins.AgentSecret(agent)); err != nil {
		return fmt.Errorf("connect agent %s to the Jenkins emulator: %w", agent, err)
	}

	var build jenkinsemu.Build
	err = d.await(ctx, StageBuildRunning, func(context.Context) (string, bool, error) {
		for _, b := range d.jenkins.Builds(job) {
			if b.Params[config.ParamTriggerID] == trigger && b.Building && b.Node == agent {
				build = b
				return fmt.Sprintf("%s #%d on agent %s, at %s", b.Job, b.Number, b.Node, b.Params[config.ParamSHA][:12]), true, nil
			}
		}
		return "", false, nil
	})
	if err != nil {
		return err
	}
	buildURL := fmt.Sprintf("%s/job/%s/%d/", d.jenkins.URL(), strings.ReplaceAll(job, "/", "/job/"), build.Number)
	// The Jenkinsfile's environment: what Jenkins gives a build (its
	// parameters, BUILD_URL) and the pipeline's ferry token.
	stepEnv := []string{"FERRY_PROMOTION_API_TOKEN=" + d.pipelineToken, "BUILD_URL=" + buildURL}
	for _, p := range config.ReservedParams {
		stepEnv = append(stepEnv, p+"="+build.Params[p])
	}

	image, err := d.buildImage(ctx, stepEnv, agent)
	if err != nil {
		return err
	}
	if err := d.promote(ctx, stepEnv, image); err != nil {
		return err
	}
	// `ferry promote create --wait` returned 0: the Jenkinsfile's last step
	// is done and Jenkins ends the build.
	if err := d.jenkins.FinishBuild(job, build.Number, jenkinsemu.Success); err != nil {
		return fmt.Errorf("end build #%d: %w", build.Number, err)
	}

	err = d.await(ctx, StageAgentGone, func(ctx context.Context) (string, bool, error) {
		pods, err := d.bed.admin.CoreV1().Pods(d.nsAgents).List(ctx, metav1.ListOptions{LabelSelector: eci.LabelAgent})
		if err != nil || len(pods.Items) > 0 {
			return "", false, nil
		}
		if _, ok := d.jenkins.Node(agent); ok {
			return "", false, nil
		}
		return fmt.Sprintf("build #%d ended SUCCESS; pod %s deleted and Jenkins node %s removed", build.Number, agent, agent), true, nil
	})
	if err != nil {
		return err
	}

	return d.await(ctx, StageReported, func(context.Context) (string, bool, error) {
		var states []string
		for _, s := range d.github.Statuses() {
			if s.SHA == d.res.SHA && s.Context == "ferry/"+pipeline {
				states = append(states, fmt.Sprintf("%s (%s)", s.State, s.Description))
			}
		}
		if len(states) == 0 || !strings.HasPrefix(states[len(states)-1], "success ") {
			return "", false, nil
		}
		envs := map[string][]string{}
		for _, dep := range d.github.Deployments() {
			if dep.SHA == d.res.SHA {
				envs[dep.Environment] = dep.States()
			}
		}
		for _, env := range []string{"test", "production"} {
			if s := envs[env]; len(s) == 0 || s[len(s)-1] != "success" {
				return "", false, nil
			}
		}
		return fmt.Sprintf("commit status ferry/%s %s; deployments: test %s, production %s", pipeline,
			strings.Join(states, " → "), strings.Join(envs["test"], "→"), strings.Join(envs["production"], "→")), true, nil
	})
}

// buildImage plays the Jenkinsfile's Image stage: `ferry image build`,
// while the demo plays kaniko in the pod ferry starts (it pushes an image
// to the registry and ends the pod with the digest as its termination
// message, as kaniko's --digest-file does). It returns the image by digest.
func (d *demo) buildImage(ctx context.Context, stepEnv []string, agent string) (string, error) {
	sha := d.res.SHA
	out := filepath.Join(d.dir, "image.txt")
	cmd := d.cli.command(ctx, stepEnv, "image", "build", "--destination", d.sourceRepo+":"+sha[:12], "--output-file", out, "--timeout", "3m")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	build, err := startBackground(cmd)
	if err != nil {
		return "", fmt.Errorf("run ferry image build: %w", err)
	}
	kaniko := make(chan error, 1)
	kctx, stopKaniko := context.WithCancel(ctx)
	defer stopKaniko()
	go func() { kaniko <- d.playKaniko(kctx, agent) }()

	select {
	case <-build.done:
	case err := <-kaniko:
		if err != nil {
			_ = build.cmd.Process.Kill()
			_ = build.wait()
			return "", err
		}
	}
	if err := build.wait(); err != nil {
		return "", fmt.Errorf("ferry image build: %w: %s", err, oneLine(stderr.String()+" "+stdout.String()))
	}
	written, err := os.ReadFile(out)
	if err != nil {
		return "", fmt.Errorf("ferry image build wrote no --output-file: %w", err)
	}
	image := strings.TrimSpace(string(written))
	repoRef, digest, _ := strings.Cut(image, "@")
	err = d.await(ctx, StageImagePushed, func(ctx context.Context) (string, bool, error) {
		got, err := registryDigest(ctx, d.sourceRepo+":"+sha[:12])
		if err != nil {
			return "", false, err
		}
		if got != digest {
			return "", false, fmt.Errorf("ferry image build answered %s, the registry has %s at %s:%s", digest, got, repoRef, sha[:12])
		}
		return fmt.Sprintf("%s (the registry has %s:%s at this digest)", image, repoRef, sha[:12]), true, nil
	})
	return image, err
}

// playKaniko waits for ferry's image-build pod to run on a virtual node,
// checks that it alone mounts the push Secret, then does kaniko's part.
func (d *demo) playKaniko(ctx context.Context, agent string) error {
	var pod *corev1.Pod
	for {
		p, _, ok := d.runningPod(ctx, imagebuild.LabelRole+"="+imagebuild.RoleBuild)
		if ok {
			pod = p
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for ferry's kaniko pod: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !mountsSecret(pod, "registry-push") {
		return fmt.Errorf("kaniko pod %s does not mount the push Secret", pod.Name)
	}
	if agentPod, err := d.agentPod(ctx, agent); err == nil && mountsSecret(agentPod, "registry-push") {
		return fmt.Errorf("agent pod %s mounts the push Secret: the build could read the registry credentials", agentPod.Name)
	}
	dest := pod.Annotations[imagebuild.AnnotationDestination]
	digest, err := pushImage(ctx, dest)
	if err != nil {
		return fmt.Errorf("play kaniko: %w", err)
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		"testbed.ferry.dev/termination-message": digest.String(), testbed.CompleteAnnotation: testbed.CompleteSucceeded}}})
	if _, err := d.bed.admin.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("end kaniko pod %s: %w", pod.Name, err)
	}
	fmt.Fprintf(d.out, "%8s  (kaniko pod %s on %s, the only pod with the push Secret, pushed %s)\n", "", pod.Name, pod.Spec.NodeName, dest)
	return nil
}

// promote plays the Jenkinsfile's Promote stage (`ferry promote create
// --wait`) and a person approving production with their own token, and
// sees the promotion go through the environments.
func (d *demo) promote(ctx context.Context, stepEnv []string, image string) error {
	cmd := d.cli.command(ctx, stepEnv, "promote", "create", "--app", app, "--image", image,
		"--commit", d.res.SHA, "--wait", "--timeout", "5m")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	pipelineStep, err := startBackground(cmd)
	if err != nil {
		return fmt.Errorf("run ferry promote create: %w", err)
	}
	defer func() {
		// Interrupted or failed before it returned: it must not outlive the demo.
		_ = pipelineStep.cmd.Process.Kill()
		_ = pipelineStep.wait()
	}()

	var p store.Promotion
	// look reads the promotion and reports whether ok holds; a promotion
	// that failed or was rejected ends the demo with its reason.
	look := func(ok func(store.Promotion) (string, bool)) func(context.Context) (string, bool, error) {
		return func(ctx context.Context) (string, bool, error) {
			list, err := d.pipelineClient().List(ctx, app)
			if err != nil || len(list) == 0 {
				return "", false, nil
			}
			p = list[0]
			if p.State == store.PromotionFailed || p.State == store.PromotionRejected {
				return "", false, fmt.Errorf("promotion %s %s: %s", p.ID, p.State, p.Reason)
			}
			detail, done := ok(p)
			return detail, done, nil
		}
	}
	inEnv := func(env, ns string) func(store.Promotion) (string, bool) {
		return func(p store.Promotion) (string, bool) {
			if _, ok := audited(p, "rolled out", env); !ok {
				return "", false
			}
			img, done := d.bed.webImage(ctx, ns)
			if !done || img != p.Target {
				return "", false
			}
			return fmt.Sprintf("promotion %s: Deployment %s/web runs %s", p.ID, ns, img), true
		}
	}
	steps := []struct {
		stage Stage
		ok    func(store.Promotion) (string, bool)
	}{
		{StagePromotedTest, inEnv("test", d.nsTest)},
		{StageVerified, func(p store.Promotion) (string, bool) {
			if _, ok := audited(p, "verified", "test"); !ok {
				return "", false
			}
			// The promoter deletes the Job once it passed and records which
			// (or that it had to keep it).
			if job, ok := audited(p, "verification job deleted", "test"); ok {
				return fmt.Sprintf("verification Job %s succeeded on a virtual node (then deleted)", job.Detail), true
			}
			if job, ok := audited(p, "verification job kept", "test"); ok {
				return fmt.Sprintf("verification Job succeeded on a virtual node; kept: %s", job.Detail), true
			}
			return "", false
		}},
		{StageWaitingApproval, func(p store.Promotion) (string, bool) {
			if p.State != store.PromotionWaiting {
				return "", false
			}
			return fmt.Sprintf("production needs a person's approval (ferry promote approve %s)", p.ID), true
		}},
	}
	for _, s := range steps {
		if err := d.await(ctx, s.stage, look(s.ok)); err != nil {
			return err
		}
	}

	// A person approves with their own token: ferry checks its SHA-256
	// against promotion.auth.tokens and records who it is.
	if _, err := d.cli.run(ctx, []string{"FERRY_TOKEN=" + d.personToken}, "promote", "approve", p.ID); err != nil {
		return err
	}
	if err := d.await(ctx, StageApproved, look(func(p store.Promotion) (string, bool) {
		a, ok := audited(p, "approved", "production")
		if !ok {
			return "", false
		}
		return fmt.Sprintf("production, by %s (a person's token, verified by ferry)", a.Actor), true
	})); err != nil {
		return err
	}
	prod := inEnv("production", d.nsProd)
	if err := d.await(ctx, StageProduction, look(func(p store.Promotion) (string, bool) {
		if p.State != store.PromotionSucceeded {
			return "", false
		}
		detail, ok := prod(p)
		return detail + ", verified", ok
	})); err != nil {
		return err
	}
	if err := pipelineStep.wait(); err != nil {
		return fmt.Errorf("ferry promote create --wait: %w: %s", err, oneLine(stderr.String()+" "+stdout.String()))
	}
	return nil
}

// audited returns the promotion's audit entry of action in env.
func audited(p store.Promotion, action, env string) (store.AuditEntry, bool) {
	i := slices.IndexFunc(p.Audit, func(a store.AuditEntry) bool { return a.Action == action && a.Environment == env })
	if i < 0 {
		return store.AuditEntry{}, false
	}
	return p.Audit[i], true
}

// runningPod finds a Running pod of the agents' namespace matching
// selector, on a virtual node.
func (d *demo) runningPod(ctx context.Context, selector string) (*corev1.Pod, *corev1.Node, bool) {
	pods, err := d.bed.admin.CoreV1().Pods(d.nsAgents).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, nil, false
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		node, err := d.bed.admin.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
		if err == nil && node.Labels[testbed.VirtualNodeLabel] == testbed.VirtualNodeLabelValue {
			return p, node, true
		}
	}
	return nil, nil, false
}

func (d *demo) agentPod(ctx context.Context, agent string) (*corev1.Pod, error) {
	pods, err := d.bed.admin.CoreV1().Pods(d.nsAgents).List(ctx, metav1.ListOptions{LabelSelector: eci.LabelAgent + "=" + agent})
	if err != nil {
		return nil, err
	}
	if len(pods.Items) == 0 {
		return nil, errors.New("no agent pod " + agent)
	}
	return &pods.Items[0], nil
}

func mountsSecret(p *corev1.Pod, secret string) bool {
	for _, v := range p.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == secret {
			return true
		}
	}
	return false
}

// eciAnnotations lists a pod's k8s.aliyun.com/ annotations, the ones ECI
// reads, sorted.
func eciAnnotations(p *corev1.Pod) string {
	var out []string
	for k, v := range p.Annotations {
		if strings.HasPrefix(k, "k8s.aliyun.com/") {
			out = append(out, strings.TrimPrefix(k, "k8s.aliyun.com/")+"="+v)
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// pushPayload is GitHub's push event for one commit to main, with what
// ferry reads of it; the clone URL is on the Git host ferry is told of.
func (d *demo) pushPayload() []byte {
	host := gitHost
	commit := map[string]any{
		"id": d.res.SHA, "message": "Ship the new checkout page", "timestamp": time.Now().UTC().Format(time.RFC3339),
		"author":   map[string]string{"name": "Dana Developer", "email": "dana@example.com", "username": "dana"},
		"added":    []string{"web/checkout.html"},
		"removed":  []string{},
		"modified": []string{"web/app.go"},
	}
	body, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "before": randomHex40(), "after": d.res.SHA,
		"repository": map[string]any{
			"name": "app", "full_name": repo, "private": true, "default_branch": "main",
			"html_url": host + "/" + repo, "clone_url": host + "/" + repo + ".git",
		},
		"head_commit": commit,
		"commits":     []any{commit},
		"pusher":      map[string]string{"name": "dana", "email": "dana@example.com"},
		"sender":      map[string]any{"login": "dana", "type": "User"},
	})
	return body
}
