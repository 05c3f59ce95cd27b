package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/kubeplugin"
)

// renderPod prints the pod ferry would create for one queue item served by
// a template: after inheritance, defaults and the fallback level, with the
// Secret it reads its JNLP secret from named but not shown.
func renderPod(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ferry render-pod", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", os.Getenv("FERRY_CONFIG"), "YAML configuration file [env FERRY_CONFIG]")
	name := fs.String("template", "", "the agent template to render (agents.templates[].name)")
	queueID := fs.Int64("queue-id", 1, "the Jenkins queue item the agent would serve")
	attempt := fs.Int("attempt", 1, "the attempt number (1 is the first pod for the item)")
	fallback := fs.Int("fallback", 0, "the fallback level (0: the template as written; N applies its first N fallbacks)")
	job := fs.String("job", "", "the Jenkins job of the queue item, shown in an annotation")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	case *file == "":
		return errors.New("--config is required: the configuration file holding agents.templates")
	case *queueID < 1 || *attempt < 1 || *fallback < 0:
		return errors.New("--queue-id must be at least 1, --attempt must be at least 1 and --fallback at least 0")
	}
	// The file alone: rendering needs no secret, so none is read.
	cfg, err := config.LoadFile(*file)
	if err != nil {
		return err
	}
	templates, err := eci.Resolve(cfg.Agents.Templates)
	if err != nil {
		return fmt.Errorf("agents.templates: %w", err)
	}
	t, ok := templates[*name]
	if !ok {
		names := make([]string, 0, len(templates))
		for n := range templates {
			names = append(names, n)
		}
		slices.Sort(names)
		if *name == "" {
			return fmt.Errorf("--template is required; the configuration has: %s", strings.Join(names, ", "))
		}
		return fmt.Errorf("no agent template %q; the configuration has: %s", *name, strings.Join(names, ", "))
	}
	jenkinsURL := cfg.Agents.JenkinsURL
	if jenkinsURL == "" {
		jenkinsURL = cfg.Jenkins.URL
	}
	agent := eci.Agent{
		Name: eci.AgentName(*queueID, *attempt), Namespace: cfg.Agents.Namespace,
		QueueID: *queueID, Attempt: *attempt, Fallback: *fallback,
		JenkinsURL: jenkinsURL, Job: *job,
		SecretName: eci.SecretGenerateName + "<generated>",
	}
	out, err := yaml.Marshal(eci.Render(t, agent))
	if err != nil {
		return fmt.Errorf("write the pod: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# The pod ferry creates for queue item %d, attempt %d, from template %q", *queueID, *attempt, t.Name)
	if t.Inherits != "" {
		fmt.Fprintf(&b, " (inherits %s)", t.Inherits)
	}
	fmt.Fprintf(&b, " at fallback level %d.\n", min(*fallback, t.FallbackLevels()))
	fmt.Fprintf(&b, "# %s is read from key %s of a Secret ferry creates just before the pod\n", eci.EnvSecret, agent.Name)
	fmt.Fprintf(&b, "# (generateName %s, owned by the pod, gone with it); its value is never rendered.\n", eci.SecretGenerateName)
	size := t.PodSize()
	if size.CPU > 0 || size.Memory > 0 {
		fmt.Fprintf(&b, "# The containers add up to %s vCPU and %s GiB", trimFloat(size.CPU), trimFloat(size.Memory))
		if spec, ok := eci.RoundUp(size); ok && len(t.AtFallback(*fallback).ECI.Specs) == 0 {
			fmt.Fprintf(&b, "; ECI creates (and bills) %s", spec)
		}
		b.WriteString(".\n")
	}
	for _, w := range t.Warnings() {
		fmt.Fprintf(&b, "# warning: %s\n", w)
	}
	b.Write(out)
	_, err = io.WriteString(stdout, b.String())
	return err
}

func trimFloat(f float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", f), "0"), ".")
}

// importTemplates converts the kubernetes plugin's pod templates (a JCasC
// file, or the ConfigMap holding it) into ferry agent templates.
func importTemplates(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "kubernetes-plugin" {
		fmt.Fprintln(stderr, "usage: ferry import kubernetes-plugin [-o FILE] JCASC.yaml")
		return errors.New("ferry import knows one source: kubernetes-plugin")
	}
	fs := flag.NewFlagSet("ferry import kubernetes-plugin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write the templates to this file instead of standard output")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("give one file: the JCasC YAML holding jenkins.clouds[].kubernetes, or the Jenkins chart's JCasC ConfigMap")
	}
	src := fs.Arg(0)
	data, err := os.ReadFile(src) //nolint:gosec // the user names the file to import
	if err != nil {
		return err
	}
	res, err := kubeplugin.Import(data)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	text, err := kubeplugin.Write(res, filepath.Base(src))
	if err != nil {
		return err
	}
	if *out != "" {
		err = os.WriteFile(*out, text, 0o600) //nolint:gosec // the user names the output file
	} else {
		_, err = stdout.Write(text)
	}
	if err != nil {
		return err
	}
	var invalid []string
	notes := 0
	for _, im := range res.Templates {
		notes += len(im.Notes)
		if im.Invalid != nil {
			invalid = append(invalid, im.Template.Name)
		}
	}
	fmt.Fprintf(stderr, "imported %d template(s), %d not written, %d note(s) on what changed (in the comments)\n", len(res.Templates), len(res.Skipped), notes)
	if len(invalid) > 0 {
		return fmt.Errorf("%d imported template(s) do not pass ferry's validation yet: %s (the comments above each say why)", len(invalid), strings.Join(invalid, ", "))
	}
	return nil
}
