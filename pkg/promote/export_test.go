package promote

import (
	"context"

	"github.com/ferryci/ferry/pkg/store"
)

// VerifyJobName exposes the verification Job's name to the tests.
var VerifyJobName = verifyJobName

// ErrStop and ErrBusy expose what Step answers when there is nothing to
// do, and when another promotion rolls the environment.
var (
	ErrStop = errStop
	ErrBusy = errBusy
)

// Step takes the next step of pr as the runner does: the record to store,
// or an error when nothing is to be recorded.
func (p *Promoter) Step(ctx context.Context, pr store.Promotion) (store.Promotion, error) {
	return p.advance(ctx, pr)
}

// WantedDeployment exposes what an environment's deployment should show.
var WantedDeployment = wantedDeployment
