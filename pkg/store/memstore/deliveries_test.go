package memstore_test

import (
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/store/memstore"
	"github.com/ferryci/ferry/pkg/store/storetest"
)

func TestDeliveryLogContract(t *testing.T) {
	storetest.RunDeliveryLog(t, func(t *testing.T, retention time.Duration, maxRecords int) store.Store {
		return newStore(t, memstore.Config{DeliveryRetention: retention, DeliveryMax: maxRecords})
	})
}
