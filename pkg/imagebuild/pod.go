package imagebuild

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ferryci/ferry/pkg/eci"
)

const (
	container = "kaniko"
	// dockerDir is where kaniko reads registry credentials from.
	dockerDir = "/kaniko/.docker"
	// terminationLog is where kaniko writes the pushed digest
	// (--digest-file): the pod's termination message.
	terminationLog = "/dev/termination-log"
)

func (b *Builder) render(r Request) *corev1.Pod {
	args := []string{
		"--context=" + kanikoContext(r),
		"--dockerfile=" + r.Dockerfile,
		"--destination=" + r.Destination,
		"--digest-file=" + terminationLog,
	}
	if r.ContextPath != "" && r.ContextPath != "." {
		args = append(args, "--context-sub-path="+r.ContextPath)
	}
	for _, k := range sortedKeys(r.BuildArgs) {
		args = append(args, "--build-arg="+k+"="+r.BuildArgs[k])
	}
	res := b.cfg.Resources
	if res.Requests == nil && res.Limits == nil {
		res = eci.DefaultResources()
	}
	annotations := b.cfg.ECI.Annotations()
	maps.Copy(annotations, map[string]string{AnnotationDestination: r.Destination, AnnotationGitURL: r.GitURL, AnnotationGitSHA: r.SHA})
	root, no := int64(0), false
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        ID(r),
			Namespace:   b.cfg.Namespace,
			Labels:      map[string]string{eci.LabelManagedBy: eci.ManagedBy, LabelRole: RoleBuild, eci.LabelECI: "true"},
			Annotations: annotations,
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			ActiveDeadlineSeconds:        ptr(int64(b.cfg.Timeout.Seconds())),
			AutomountServiceAccountToken: &no,
			EnableServiceLinks:           &no,
			NodeSelector:                 map[string]string{eci.VirtualNodeLabel: eci.VirtualNodeValue},
			Tolerations: []corev1.Toleration{{Key: eci.VirtualNodeTaintKey, Operator: corev1.TolerationOpEqual,
				Value: eci.VirtualNodeTaintValue, Effect: corev1.TaintEffectNoSchedule}},
			Volumes: []corev1.Volume{{Name: "push-credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: b.cfg.PushSecret,
				Items:      []corev1.KeyToPath{{Key: corev1.DockerConfigJsonKey, Path: "config.json"}},
			}}}},
			Containers: []corev1.Container{{
				Name:  container,
				Image: b.cfg.KanikoImage,
				Args:  args,
				Env:   []corev1.EnvVar{{Name: "DOCKER_CONFIG", Value: dockerDir}},
				// kaniko unpacks the base image over its own root: it runs
				// as root with a writable filesystem, in a pod of its own.
				SecurityContext: &corev1.SecurityContext{
					RunAsUser: &root, AllowPrivilegeEscalation: &no,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"},
						Add: []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"}},
				},
				Resources:                res,
				VolumeMounts:             []corev1.VolumeMount{{Name: "push-credentials", MountPath: dockerDir, ReadOnly: true}},
				TerminationMessagePath:   terminationLog,
				TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			}},
		},
	}
}

// kanikoContext is kaniko's Git context: git://host/path#ref#sha (kaniko
// clones it over https).
func kanikoContext(r Request) string {
	return "git://" + strings.TrimPrefix(r.GitURL, "https://") + "#" + r.Ref + "#" + r.SHA
}

func ptr[T any](v T) *T { return &v }

// status reads a build's state from its pod.
func (b *Builder) status(ctx context.Context, pod *corev1.Pod) Status {
	s := Status{ID: pod.Name, Destination: pod.Annotations[AnnotationDestination], Started: pod.CreationTimestamp.Time}
	term := terminated(pod)
	if term != nil && !term.FinishedAt.IsZero() {
		t := term.FinishedAt.Time
		s.Finished = &t
	}
	switch pod.Status.Phase {
	case corev1.PodSucceeded:
		digest := strings.TrimSpace(messageOf(term))
		if !digestText.MatchString(digest) {
			s.State, s.Reason = StateFailed, "kaniko ended without writing the pushed image's digest; its log says why"
			return s
		}
		if err := b.verify(ctx, pod, s.Destination, digest); err != nil {
			s.State, s.Reason = StateFailed, err.Error()
			return s
		}
		s.State, s.Digest = StateSucceeded, digest
		if ref, err := name.NewTag(s.Destination); err == nil {
			s.Image = ref.Context().Name() + "@" + digest
		}
	case corev1.PodFailed:
		s.State = StateFailed
		switch {
		case pod.Status.Reason == "DeadlineExceeded":
			s.Reason = fmt.Sprintf("the build ran longer than its timeout (%s)", b.cfg.Timeout)
		case term != nil && term.ExitCode != 0:
			s.Reason = fmt.Sprintf("kaniko exited with code %d: the build or the push failed; its log says why", term.ExitCode)
		default:
			s.Reason = eci.Classify(pod, nil, eci.ClassifyOptions{Now: b.cfg.Now()}).String()
		}
	case corev1.PodRunning:
		s.State = StateRunning
	default:
		s.State = StatePending
		if f := eci.Classify(pod, nil, eci.ClassifyOptions{Now: b.cfg.Now()}); f.Failed() && !f.Retryable {
			s.State, s.Reason = StateFailed, f.String()
		} else if f.Failed() {
			s.Reason = f.String()
		}
	}
	return s
}

func terminated(pod *corev1.Pod) *corev1.ContainerStateTerminated {
	for _, c := range pod.Status.ContainerStatuses {
		if c.Name == container && c.State.Terminated != nil {
			return c.State.Terminated
		}
	}
	return nil
}

func messageOf(t *corev1.ContainerStateTerminated) string {
	if t == nil {
		return ""
	}
	return t.Message
}

// verify asks the registry for destination@digest once per build: a
// digest kaniko wrote that the registry does not have fails the build; an
// unreachable registry does not (kaniko pushed, and said so).
func (b *Builder) verify(ctx context.Context, pod *corev1.Pod, destination, digest string) error {
	b.mu.Lock()
	err, done := b.verified[pod.Name]
	b.mu.Unlock()
	if done {
		return err
	}
	tag, perr := name.NewTag(destination)
	if perr != nil {
		return fmt.Errorf("the build's destination %q is not an image reference", destination)
	}
	ref := tag.Context().Digest(digest)
	// A list by name needs only the rights the provisioner has (list),
	// not get on every Secret of the namespace.
	var dockerConfig []byte
	secs, serr := b.cfg.Kube.CoreV1().Secrets(b.cfg.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + b.cfg.PushSecret})
	switch {
	case serr != nil:
		b.log.Warn("could not read the push Secret to check the digest; asking the registry anonymously", "secret", b.cfg.PushSecret, "error", serr)
	case len(secs.Items) == 0:
		b.log.Warn("the push Secret is missing; asking the registry anonymously", "secret", b.cfg.PushSecret)
	default:
		dockerConfig = secs.Items[0].Data[corev1.DockerConfigJsonKey]
	}
	verr := b.cfg.Verify(ctx, ref, dockerConfig)
	var terr *transport.Error
	switch {
	case verr == nil:
		err = nil
	case errors.As(verr, &terr) && (terr.StatusCode == http.StatusNotFound):
		err = fmt.Errorf("kaniko reported %s, but the registry does not have it", ref)
	default:
		b.log.Warn("could not check the pushed digest at the registry; trusting kaniko", "id", pod.Name, "image", ref.String(), "error", verr)
		return nil // not remembered: asked again next time
	}
	b.mu.Lock()
	b.verified[pod.Name] = err
	b.mu.Unlock()
	return err
}

// verifyAtRegistry is HEAD destination@digest with the push credentials.
func verifyAtRegistry(ctx context.Context, ref name.Digest, dockerConfig []byte) error {
	_, err := remote.Head(ref, remote.WithContext(ctx), remote.WithAuthFromKeychain(configKeychain(dockerConfig)))
	return err
}

// configKeychain serves credentials from a docker config.json's auths.
type configKeychain []byte

func (k configKeychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	var cfg struct {
		Auths map[string]authn.AuthConfig `json:"auths"`
	}
	if len(k) == 0 || json.Unmarshal(k, &cfg) != nil {
		return authn.Anonymous, nil
	}
	for host, a := range cfg.Auths {
		h := strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
		if strings.TrimSuffix(h, "/") != res.RegistryStr() {
			continue
		}
		if a.Auth != "" && a.Username == "" {
			if raw, err := base64.StdEncoding.DecodeString(a.Auth); err == nil {
				a.Username, a.Password, _ = strings.Cut(string(raw), ":")
			}
		}
		return authn.FromConfig(a), nil
	}
	return authn.Anonymous, nil
}

// Sweep deletes build pods that ended more than Keep ago. Every replica
// may run it: deletions of what is gone already are ignored.
func (b *Builder) Sweep(ctx context.Context) error {
	pods, err := b.cfg.Kube.CoreV1().Pods(b.cfg.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{LabelRole: RoleBuild, eci.LabelManagedBy: eci.ManagedBy}).String(),
	})
	if err != nil {
		return fmt.Errorf("list image build pods: %w", err)
	}
	now := b.cfg.Now()
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			continue
		}
		end := p.CreationTimestamp.Time
		if t := terminated(p); t != nil && !t.FinishedAt.IsZero() {
			end = t.FinishedAt.Time
		}
		if end.IsZero() || now.Sub(end) < b.cfg.Keep {
			continue
		}
		uid := p.UID
		err := b.cfg.Kube.CoreV1().Pods(b.cfg.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !isGone(err) {
			return fmt.Errorf("delete image build pod %s: %w", p.Name, err)
		}
		b.mu.Lock()
		delete(b.verified, p.Name)
		b.mu.Unlock()
	}
	return nil
}

// Run sweeps every interval until ctx ends.
func (b *Builder) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := b.Sweep(ctx); err != nil && ctx.Err() == nil {
			b.log.Warn("sweeping finished image builds", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func isGone(err error) bool { return apierrors.IsNotFound(err) || apierrors.IsConflict(err) }
