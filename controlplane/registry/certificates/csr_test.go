package certificates

import (
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestCSRStatusUpdateKeepsApprovalAndOrder(t *testing.T) {
	cond := func(typ certificatesv1.RequestConditionType) certificatesv1.CertificateSigningRequestCondition {
		return certificatesv1.CertificateSigningRequestCondition{Type: typ, Status: corev1.ConditionTrue}
	}
	types := func(csr *certificatesv1.CertificateSigningRequest) []certificatesv1.RequestConditionType {
		var out []certificatesv1.RequestConditionType
		for _, c := range csr.Status.Conditions {
			out = append(out, c.Type)
		}
		return out
	}
	old := &certificatesv1.CertificateSigningRequest{Status: certificatesv1.CertificateSigningRequestStatus{
		Conditions: []certificatesv1.CertificateSigningRequestCondition{cond("ApprovalPatch"), cond(certificatesv1.CertificateApproved)}}}
	// A condition appended through /status, the approval sent back as it was.
	upd := old.DeepCopy()
	upd.Status.Conditions = append(upd.Status.Conditions, cond("StatusUpdate"))
	prepareCSRUpdate("status", upd, old)
	if got := types(upd); len(got) != 3 || got[2] != "StatusUpdate" || got[1] != certificatesv1.CertificateApproved {
		t.Fatalf("conditions %v, want ApprovalPatch, Approved, StatusUpdate", got)
	}
	// /status may not take the approval away.
	upd = old.DeepCopy()
	upd.Status.Conditions = upd.Status.Conditions[:1]
	prepareCSRUpdate("status", upd, old)
	if got := types(upd); len(got) != 2 || got[1] != certificatesv1.CertificateApproved {
		t.Fatalf("conditions %v: the approval was dropped through /status", got)
	}
}
