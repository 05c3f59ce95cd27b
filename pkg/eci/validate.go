package eci

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// MaxSpecs is how many specs ECI accepts in eci-use-specs.
const MaxSpecs = 5

var (
	specVCPUMem = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)-([0-9]+(?:\.[0-9]+)?)Gi$`)
	specECSType = regexp.MustCompile(`^ecs\.[a-z0-9][a-z0-9-]*\.[a-z0-9][a-z0-9-]*$`)
	priceSyntax = regexp.MustCompile(`^[0-9]+(\.[0-9]{1,3})?$`)
	vswitchID   = regexp.MustCompile(`^vsw-[a-z0-9]+$`)
	sgID        = regexp.MustCompile(`^sg-[a-z0-9]+$`)
	imcID       = regexp.MustCompile(`^imc-[a-z0-9]+$`)
	acrID       = regexp.MustCompile(`^cri-[a-z0-9]+$`)
	ramRole     = regexp.MustCompile(`^[A-Za-z0-9.-]{1,64}$`)
	// Jenkins label atoms: no whitespace and none of the operators of a
	// label expression.
	jenkinsLabel = regexp.MustCompile(`^[^\s&|!()<>=,"']+$`)
)

// ReservedEnv are the agent container's variables set by ferry.
var ReservedEnv = []string{EnvJenkinsURL, EnvAgentName, EnvSecret, EnvWebSocket, EnvWorkDir, EnvTraceParent}

// Validate checks the template as Render would use it (after defaults) and
// reports every problem at once, each naming the field and the fix. Field
// names are relative to the template, e.g. "eci.specs[1]".
func (t Template) Validate() error {
	t = t.WithDefaults()
	v := &validator{}
	switch {
	case t.Name == "":
		v.add("name", "must be set, e.g. linux")
	case len(validation.IsDNS1123Label(t.Name)) > 0:
		v.add("name", "%q must be lower-case letters, digits or '-', start and end with a letter or digit, at most 63 characters", t.Name)
	}
	if t.Inherits == t.Name && t.Name != "" {
		v.add("inherits", "a template cannot inherit from itself")
	}
	for i, l := range t.Labels {
		f := fmt.Sprintf("labels[%d]", i)
		switch {
		case !jenkinsLabel.MatchString(l):
			v.add(f, "%q is not a Jenkins label: no spaces, quotes or &|!()<>=,", l)
		case slices.Index(t.Labels, l) < i:
			v.add(f, "%q is listed twice", l)
		}
	}
	v.image(t)
	v.resources(t.Resources)
	v.env(t.Env)
	volumes := v.volumes(t)
	v.mounts(t, volumes)
	v.sidecars(t, volumes)
	v.eciSize(t)
	v.placement(t)
	v.security(t)
	v.durations(t)
	if t.MaxAgents < 0 {
		v.add("maxAgents", "must not be negative; 0 means only the global cap applies")
	}
	v.eci("eci", t.ECI)
	v.fallbacks(t)
	v.warmPool(t)
	return errors.Join(v.errs...)
}

type validator struct{ errs []error }

func (v *validator) add(field, format string, a ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
}

func (v *validator) image(t Template) {
	v.imageRef("image", t.Image)
	v.pullPolicy("imagePullPolicy", t.ImagePullPolicy)
	for i, s := range t.ImagePullSecrets {
		if len(validation.IsDNS1123Subdomain(s)) > 0 {
			v.add(fmt.Sprintf("imagePullSecrets[%d]", i), "%q is not a Secret name", s)
		}
	}
}

func (v *validator) imageRef(field, image string) {
	switch {
	case strings.TrimSpace(image) != image || strings.ContainsAny(image, " \t\n"):
		v.add(field, "%q must not contain whitespace", image)
	case strings.HasSuffix(image, ":"):
		v.add(field, "%q has an empty tag; write it like jenkins/inbound-agent:<tag>", image)
	}
}

func (v *validator) pullPolicy(field string, p corev1.PullPolicy) {
	switch p {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		v.add(field, "%q is not a pull policy: use IfNotPresent, Always or Never", p)
	}
}

func (v *validator) resources(r corev1.ResourceRequirements) { v.resourcesAt("resources", r) }

func (v *validator) resourcesAt(field string, r corev1.ResourceRequirements) {
	for _, name := range slices.Sorted(maps.Keys(r.Requests)) {
		q := r.Requests[name]
		if q.Sign() < 0 {
			v.add(field+".requests."+string(name), "must not be negative")
		}
		if l, ok := r.Limits[name]; ok && q.Cmp(l) > 0 {
			v.add(field+".requests."+string(name), "%s is above the limit %s; raise %s.limits.%s or lower the request", q.String(), l.String(), field, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(r.Limits)) {
		if l := r.Limits[name]; l.Sign() < 0 {
			v.add(field+".limits."+string(name), "must not be negative")
		}
	}
}

func (v *validator) env(env []corev1.EnvVar) {
	for i, e := range env {
		f := fmt.Sprintf("env[%d]", i)
		switch {
		case e.Name == "" || strings.ContainsAny(e.Name, "= \t\n"):
			v.add(f+".name", "%q is not a variable name", e.Name)
		case slices.Contains(ReservedEnv, e.Name):
			v.add(f+".name", "%s is set by ferry itself; choose another name", e.Name)
		case slices.IndexFunc(env, func(o corev1.EnvVar) bool { return o.Name == e.Name }) < i:
			v.add(f+".name", "%s is set twice", e.Name)
		}
		if e.Value != "" && e.ValueFrom != nil {
			v.add(f, "set value or valueFrom, not both")
		}
	}
}

// volumes checks the template's volumes and returns every volume name the
// pod will have.
func (v *validator) volumes(t Template) []string {
	names := []string{VolumeWorkspace, VolumeTmp}
	for i, vol := range t.Volumes {
		f := fmt.Sprintf("volumes[%d]", i)
		if len(validation.IsDNS1123Label(vol.Name)) > 0 {
			v.add(f+".name", "%q must be a DNS label (lower-case letters, digits, '-')", vol.Name)
		}
		if slices.IndexFunc(t.Volumes, func(o Volume) bool { return o.Name == vol.Name }) < i {
			v.add(f+".name", "%q is defined twice", vol.Name)
		}
		if reflect.ValueOf(vol.VolumeSource).IsZero() {
			v.add(f, "%q has no source: set emptyDir, configMap, secret, persistentVolumeClaim, …", vol.Name)
		}
		if vol.HostPath != nil && *t.VirtualNode {
			v.add(f+".hostPath", "ECI does not support hostPath volumes; use emptyDir or a persistentVolumeClaim")
		}
		if !slices.Contains(names, vol.Name) {
			names = append(names, vol.Name)
		}
	}
	return names
}

func (v *validator) mounts(t Template, volumes []string) {
	for i, m := range t.VolumeMounts {
		f := fmt.Sprintf("volumeMounts[%d]", i)
		if !slices.Contains(volumes, m.Name) {
			v.add(f+".name", "%q is not a volume; define it in volumes (or use %s or %s)", m.Name, VolumeWorkspace, VolumeTmp)
		}
		if !path.IsAbs(m.MountPath) {
			v.add(f+".mountPath", "%q must be an absolute path", m.MountPath)
		}
		if slices.IndexFunc(t.VolumeMounts, func(o corev1.VolumeMount) bool { return o.MountPath == m.MountPath }) < i {
			v.add(f+".mountPath", "%q is mounted twice", m.MountPath)
		}
	}
	if !path.IsAbs(t.WorkDir) {
		v.add("workDir", "%q must be an absolute path, e.g. %s", t.WorkDir, DefaultWorkDir)
	} else if *t.Security.ReadOnlyRootFilesystem && !writable(t.WorkDir, mountsOf(t)) {
		v.add("workDir", "%q is on the read-only root filesystem; put it under a writable volume mount such as %s, or set security.readOnlyRootFilesystem: false", t.WorkDir, AgentHome)
	}
}

// writable reports whether dir is on a writable volume mount.
func writable(dir string, mounts []corev1.VolumeMount) bool {
	best, ro := "", true
	for _, m := range mounts {
		p := path.Clean(m.MountPath)
		if (dir == p || strings.HasPrefix(dir, strings.TrimSuffix(p, "/")+"/")) && len(p) > len(best) {
			best, ro = p, m.ReadOnly
		}
	}
	return best != "" && !ro
}

func (v *validator) placement(t Template) {
	for _, k := range slices.Sorted(maps.Keys(t.NodeSelector)) {
		f := "nodeSelector." + k
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			v.add(f, "%q is not a label key: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(t.NodeSelector[k]); len(errs) > 0 {
			v.add(f, "%q is not a label value: %s", t.NodeSelector[k], strings.Join(errs, "; "))
		}
		if *t.VirtualNode && k == VirtualNodeLabel && t.NodeSelector[k] != VirtualNodeValue {
			v.add(f, "conflicts with virtualNode, which selects %s=%s; remove it or set virtualNode: false", VirtualNodeLabel, VirtualNodeValue)
		}
	}
	for i, tol := range t.Tolerations {
		f := fmt.Sprintf("tolerations[%d]", i)
		switch tol.Operator {
		case "", corev1.TolerationOpEqual:
		case corev1.TolerationOpExists:
			if tol.Value != "" {
				v.add(f+".value", "must be empty with operator Exists")
			}
		default:
			v.add(f+".operator", "%q is not an operator: use Equal or Exists", tol.Operator)
		}
		switch tol.Effect {
		case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			v.add(f+".effect", "%q is not an effect: use NoSchedule, PreferNoSchedule or NoExecute", tol.Effect)
		}
	}
	labels := func(field string, m map[string]string, reserved func(string) string) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			f := field + "." + k
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				v.add(f, "%q is not a valid key: %s", k, strings.Join(errs, "; "))
			}
			if why := reserved(k); why != "" {
				v.add(f, "%s", why)
			}
		}
	}
	labels("podLabels", t.PodLabels, func(k string) string {
		switch {
		case k == LabelManagedBy || strings.HasPrefix(k, ferryPrefix):
			return "is set by ferry itself; choose another key"
		case k == LabelECI && *t.VirtualNode:
			return "is set by virtualNode; remove it"
		}
		if errs := validation.IsValidLabelValue(t.PodLabels[k]); len(errs) > 0 {
			return fmt.Sprintf("%q is not a label value: %s", t.PodLabels[k], strings.Join(errs, "; "))
		}
		return ""
	})
	labels("podAnnotations", t.PodAnnotations, func(k string) string {
		switch {
		case strings.HasPrefix(k, ferryPrefix):
			return "is set by ferry itself; choose another key"
		case slices.Contains(ECIAnnotations, k):
			return "is rendered from the eci settings; set it there"
		}
		return ""
	})
	if t.ServiceAccountName != "" && len(validation.IsDNS1123Subdomain(t.ServiceAccountName)) > 0 {
		v.add("serviceAccountName", "%q is not a service account name", t.ServiceAccountName)
	}
}

func (v *validator) security(t Template) {
	s := t.Security
	for _, id := range []struct {
		f string
		v int64
	}{{"security.runAsUser", *s.RunAsUser}, {"security.runAsGroup", *s.RunAsGroup}, {"security.fsGroup", *s.FSGroup}} {
		if id.v < 0 {
			v.add(id.f, "must not be negative")
		}
	}
	if *s.RunAsNonRoot && *s.RunAsUser == 0 {
		v.add("security.runAsUser", "0 (root) contradicts runAsNonRoot; set security.runAsNonRoot: false if the image must run as root")
	}
	for i, c := range s.AddCapabilities {
		if c == "" || c == "ALL" || strings.ToUpper(string(c)) != string(c) {
			v.add(fmt.Sprintf("security.addCapabilities[%d]", i), "%q must name one capability in capitals, e.g. CHOWN", c)
		}
	}
}

func (v *validator) durations(t Template) {
	for _, d := range []struct {
		f string
		d time.Duration
	}{
		{"pendingTimeout", t.PendingTimeout.Duration},
		{"connectTimeout", t.ConnectTimeout.Duration},
		{"activeDeadline", t.ActiveDeadline.Duration},
		{"terminationGracePeriod", t.TerminationGracePeriod.Duration},
		{"retry.backoff", t.Retry.Backoff.Duration},
		{"retry.maxBackoff", t.Retry.MaxBackoff.Duration},
	} {
		if d.d < 0 {
			v.add(d.f, "must not be negative; write a duration like 30s or 5m")
		}
	}
	if a := t.ActiveDeadline.Duration; a > 0 && a < time.Second {
		v.add("activeDeadline", "must be at least 1s: Kubernetes counts it in whole seconds")
	}
	if a, p := t.ActiveDeadline.Duration, t.PendingTimeout.Duration; a > 0 && p >= a {
		v.add("pendingTimeout", "%s must be below activeDeadline (%s)", p, a)
	}
	if t.Retry.MaxAttempts < 0 {
		v.add("retry.maxAttempts", "must be at least 1 (the first attempt counts)")
	}
	if t.Retry.MaxBackoff.Duration < t.Retry.Backoff.Duration {
		v.add("retry.maxBackoff", "must not be below retry.backoff")
	}
}

func (v *validator) eci(field string, e ECI) {
	if len(e.Specs) > MaxSpecs {
		v.add(field+".specs", "lists %d specs; ECI accepts at most %d", len(e.Specs), MaxSpecs)
	}
	for i, s := range e.Specs {
		f := fmt.Sprintf("%s.specs[%d]", field, i)
		if err := checkSpec(s); err != nil {
			v.add(f, "%v", err)
		} else if slices.Index(e.Specs, s) < i {
			v.add(f, "%q is listed twice", s)
		}
	}
	spot := e.SpotStrategy != ""
	switch e.SpotStrategy {
	case "":
	case SpotAsPriceGo:
		if e.SpotPriceLimit != "" {
			v.add(field+".spotPriceLimit", "applies only to spotStrategy %s; remove it or change the strategy", SpotWithPriceLimit)
		}
	case SpotWithPriceLimit:
		if e.SpotPriceLimit == "" {
			v.add(field+".spotPriceLimit", "must be set with spotStrategy %s: the highest hourly price, e.g. 0.05", SpotWithPriceLimit)
		}
	default:
		v.add(field+".spotStrategy", "%q is not a spot strategy: use %s, %s or leave it empty for pay-as-you-go", e.SpotStrategy, SpotAsPriceGo, SpotWithPriceLimit)
	}
	if p := string(e.SpotPriceLimit); p != "" {
		if !priceSyntax.MatchString(p) {
			v.add(field+".spotPriceLimit", "%q must be a decimal price with at most 3 decimals, e.g. 0.068", p)
		} else if f, _ := strconv.ParseFloat(p, 64); f <= 0 {
			v.add(field+".spotPriceLimit", "must be above 0")
		}
	}
	if e.SpotDuration != nil {
		switch {
		case !spot:
			v.add(field+".spotDuration", "applies only to spot instances; set spotStrategy or remove it")
		case *e.SpotDuration < 0 || *e.SpotDuration > 6:
			v.add(field+".spotDuration", "%d must be a number of protected hours from 0 (none) to 6", *e.SpotDuration)
		}
	}
	if e.SpotFallback != nil && !spot {
		v.add(field+".spotFallback", "applies only to spot instances; set spotStrategy or remove it")
	}
	if e.ImageCacheID != "" {
		if !imcID.MatchString(e.ImageCacheID) {
			v.add(field+".imageCacheID", "%q is not an image cache id (imc-…)", e.ImageCacheID)
		}
		if e.AutoImageCache != nil && *e.AutoImageCache {
			v.add(field+".autoImageCache", "set imageCacheID or autoImageCache, not both")
		}
	}
	for i, s := range e.VSwitches {
		f := fmt.Sprintf("%s.vSwitches[%d]", field, i)
		if !vswitchID.MatchString(s) {
			v.add(f, "%q is not a vSwitch id (vsw-…)", s)
		} else if slices.Index(e.VSwitches, s) < i {
			v.add(f, "%q is listed twice", s)
		}
	}
	switch e.ScheduleStrategy {
	case "", VSwitchOrdered, VSwitchRandom:
	default:
		v.add(field+".scheduleStrategy", "%q is not a schedule strategy: use %s or %s", e.ScheduleStrategy, VSwitchOrdered, VSwitchRandom)
	}
	if e.ScheduleStrategy != "" && len(e.VSwitches) < 2 {
		v.add(field+".scheduleStrategy", "chooses among several vSwitches; list at least two in vSwitches")
	}
	if e.SecurityGroup != "" && !sgID.MatchString(e.SecurityGroup) {
		v.add(field+".securityGroup", "%q is not a security group id (sg-…)", e.SecurityGroup)
	}
	if e.RAMRoleName != "" && !ramRole.MatchString(e.RAMRoleName) {
		v.add(field+".ramRoleName", "%q is not a RAM role name (letters, digits, '.', '-', at most 64)", e.RAMRoleName)
	}
	if s := e.ExtraEphemeralStorage; s != "" {
		if q, err := resource.ParseQuantity(s); err != nil || q.Sign() <= 0 {
			v.add(field+".extraEphemeralStorage", "%q must be a positive size, e.g. 50Gi", s)
		}
	}
	switch e.FailStrategy {
	case "", FailFast, FailBack, FailOver:
	default:
		v.add(field+".failStrategy", "%q is not a fail strategy: use %s, %s or %s", e.FailStrategy, FailFast, FailBack, FailOver)
	}
	if e.ACRInstanceID != "" && !acrID.MatchString(e.ACRInstanceID) {
		v.add(field+".acrInstanceID", "%q is not an ACR Enterprise instance id (cri-…)", e.ACRInstanceID)
	}
}

// checkSpec checks one eci-use-specs entry.
func checkSpec(s string) error {
	if m := specVCPUMem.FindStringSubmatch(s); m != nil {
		cpu, _ := strconv.ParseFloat(m[1], 64)
		mem, _ := strconv.ParseFloat(m[2], 64)
		if cpu < 0.25 || cpu > 64 {
			return fmt.Errorf("%q asks for %s vCPU; ECI offers 0.25 to 64", s, m[1])
		}
		if mem <= 0 {
			return fmt.Errorf("%q asks for no memory", s)
		}
		return nil
	}
	if specECSType.MatchString(s) {
		return nil
	}
	return fmt.Errorf("%q is not a spec: write vCPU-memory like 2-4Gi or an ECS instance type like ecs.c6.xlarge", s)
}

func (v *validator) fallbacks(t Template) {
	cur := t.ECI
	for i, fb := range t.Fallbacks {
		f := fmt.Sprintf("fallbacks[%d]", i)
		if fb.DropSpecs < 0 {
			v.add(f+".dropSpecs", "must not be negative")
		}
		if fb.RotateVSwitches < 0 {
			v.add(f+".rotateVSwitches", "must not be negative")
		}
		specs := cur.Specs
		if fb.Specs != nil {
			specs = fb.Specs
		}
		if fb.DropSpecs > 0 && fb.DropSpecs >= len(specs) {
			v.add(f+".dropSpecs", "drops %d of %d specs and would leave none; list more specs in eci.specs or drop fewer", fb.DropSpecs, len(specs))
		}
		vsw := cur.VSwitches
		if fb.VSwitches != nil {
			vsw = fb.VSwitches
		}
		if fb.RotateVSwitches > 0 && len(vsw) < 2 {
			v.add(f+".rotateVSwitches", "needs at least two vSwitches in eci.vSwitches to rotate")
		}
		if fb.OnDemand && cur.SpotStrategy == "" {
			v.add(f+".onDemand", "agents are already on-demand at this level; set eci.spotStrategy or remove it")
		}
		for j, sp := range fb.Specs {
			if err := checkSpec(sp); err != nil {
				v.add(fmt.Sprintf("%s.specs[%d]", f, j), "%v", err)
			}
		}
		if len(fb.Specs) > MaxSpecs {
			v.add(f+".specs", "lists %d specs; ECI accepts at most %d", len(fb.Specs), MaxSpecs)
		}
		for j, id := range fb.VSwitches {
			if !vswitchID.MatchString(id) {
				v.add(fmt.Sprintf("%s.vSwitches[%d]", f, j), "%q is not a vSwitch id (vsw-…)", id)
			}
		}
		if fb.VSwitches != nil && cur.ScheduleStrategy != "" && len(fb.VSwitches) < 2 {
			v.add(f+".vSwitches", "eci.scheduleStrategy chooses among several vSwitches; list at least two")
		}
		next := fb.apply(cur)
		if reflect.DeepEqual(next, cur) {
			v.add(f, "changes nothing at fallback level %d; set specs, dropSpecs, onDemand, vSwitches or rotateVSwitches", i+1)
		}
		cur = next
	}
}
