package testbed

import (
	"bufio"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestRedisAnswersPing(t *testing.T) {
	addr := RedisAddr(t)
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial redis %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		t.Fatalf("send PING: %v", err)
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("read PING reply: %v", err)
	}
	if reply != "+PONG\r\n" {
		t.Fatalf("PING reply = %q, want +PONG", reply)
	}
}

func TestRegistryServesPushedImageByDigest(t *testing.T) {
	addr := RegistryAddr(t)

	img, err := random.Image(4096, 2)
	if err != nil {
		t.Fatalf("build random image: %v", err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	repo := addr + "/testbed/random-" + RandomSuffix(6)
	tag, err := name.ParseReference(repo + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("push %s: %v", tag, err)
	}

	byDigest, err := name.NewDigest(repo + "@" + want.String())
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Image(byDigest)
	if err != nil {
		t.Fatalf("pull %s: %v", byDigest, err)
	}
	got, err := pulled.Digest()
	if err != nil {
		t.Fatalf("digest of pulled image: %v", err)
	}
	if got != want {
		t.Fatalf("pulled digest = %s, want %s", got, want)
	}
	wantLayers, _ := img.Layers()
	gotLayers, err := pulled.Layers()
	if err != nil || len(gotLayers) != len(wantLayers) {
		t.Fatalf("pulled %d layers (err %v), want %d", len(gotLayers), err, len(wantLayers))
	}
	for i := range wantLayers {
		w, _ := wantLayers[i].Digest()
		g, err := gotLayers[i].Digest()
		if err != nil || g != w {
			t.Errorf("layer %d digest = %s (err %v), want %s", i, g, err, w)
		}
	}

	// Deletion is enabled in the bed's registry (a promoter may clean up).
	if err := remote.Delete(byDigest); err != nil {
		t.Fatalf("delete %s: %v", byDigest, err)
	}
	_, err = remote.Image(byDigest)
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != 404 {
		t.Fatalf("pull after delete: err = %v, want a 404", err)
	}
}
