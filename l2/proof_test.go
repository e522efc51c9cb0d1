package l2

import "testing"

// TestProofAndKeyHash: KeyHash is the hash of EncodeKey's value; a proof
// binds the writer, the value and the not-found flag, and an unmarked item
// proves nothing.
func TestProofAndKeyHash(t *testing.T) {
	if KeyHash("ns", "k1") != PartitionKeyHash("ns#k1") || KeyHash("", "k") != PartitionKeyHash("#k") {
		t.Fatal("KeyHash differs from PartitionKeyHash of the encoded key")
	}
	if KeyHash("ns", "k1") == KeyHash("ns", "k2") {
		t.Fatal("distinct keys hash alike")
	}
	p := WriteProof("me", ValueSum([]byte("v")), false)
	for name, q := range map[string]uint64{
		"other writer": WriteProof("you", ValueSum([]byte("v")), false),
		"other value":  WriteProof("me", ValueSum([]byte("w")), false),
		"not found":    WriteProof("me", ValueSum([]byte("v")), true),
	} {
		if q == p {
			t.Errorf("%s gives the same proof", name)
		}
	}
	if p == 0 || WriteProof("", ValueSum([]byte("v")), false) != 0 {
		t.Fatal("a marked proof is 0, or an unmarked one is not")
	}
	if (Item{Writer: "me", Value: []byte("v")}).Proof() != p {
		t.Fatal("Item.Proof differs from WriteProof")
	}
}
