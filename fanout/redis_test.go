package fanout_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/fanout"
)

// TestRedisACLUser: with the default user disabled, a transport dialled
// with an ACL user's name and password publishes and receives; one without
// credentials, or with a wrong password, cannot connect.
func TestRedisACLUser(t *testing.T) {
	creds := redis.Options{Username: "fanout", Password: "s3cret"}
	srv := startRedisWith(t, creds, "--user", "default", "off",
		"--user", "fanout", "on", ">s3cret", "~*", "&*", "+@all")
	pub, sub := srv.dial(t), srv.dial(t)
	got := make(chan []byte, 1)
	unsub, err := sub.Subscribe("acl-test", func(b []byte) {
		select {
		case got <- append([]byte(nil), b...):
		default:
		}
	}, func(fanout.ConnState) {})
	if err != nil {
		t.Fatalf("Subscribe as an ACL user: %v", err)
	}
	defer unsub()
	if err := pub.Publish(testContext(t), "acl-test", []byte("hello")); err != nil {
		t.Fatalf("Publish as an ACL user: %v", err)
	}
	select {
	case b := <-got:
		if string(b) != "hello" {
			t.Fatalf("received %q, want hello", b)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no message within 30s")
	}
	for _, o := range []redis.Options{{}, {Username: "fanout", Password: "wrong"}} {
		o.Addr = srv.addr()
		if tr, err := fanout.DialRedis(testContext(t), &o); err == nil {
			_ = tr.Close()
			t.Fatalf("DialRedis with user %q password %q connected; want refused", o.Username, o.Password)
		}
	}
}
