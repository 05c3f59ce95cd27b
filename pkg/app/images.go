package app

import (
	"context"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/imagebuild"
	"github.com/ferryci/ferry/pkg/telemetry"
)

// images is the image build API and its sweeper, on every replica: a
// build's pod is its record, so any replica can answer for it.
type images struct {
	builder *imagebuild.Builder
	api     *imagebuild.Server
}

func newImages(cfg config.Config, tel *telemetry.Telemetry) (*images, error) {
	im := cfg.Images
	ns, kubeconfig := im.Namespace, im.Kubeconfig
	if ns == "" {
		ns = cfg.Agents.Namespace
	}
	if kubeconfig == "" {
		kubeconfig = cfg.Agents.Kubeconfig
	}
	kube, err := newKube(kubeSource{Kubeconfig: kubeconfig, Setting: "images.kubeconfig", UserAgent: "ferry-images"})
	if err != nil {
		return nil, err
	}
	b, err := imagebuild.New(imagebuild.Config{
		Kube: kube, Namespace: ns, PushSecret: im.PushSecret, Destinations: im.Destinations,
		KanikoImage: im.KanikoImage, Timeout: im.Timeout.Duration, Keep: im.Keep.Duration,
		Resources: im.Resources, ECI: im.ECI, Logger: tel.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &images{builder: b, api: imagebuild.NewServer(b, cfg.Promotion.APIToken)}, nil
}

func (i *images) run(ctx context.Context) { i.builder.Run(ctx, time.Minute) }
