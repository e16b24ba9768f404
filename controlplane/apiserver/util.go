package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func jsonMarshal(v interface{}) ([]byte, error) { return json.Marshal(v) }

func statusError(code int32, reason metav1.StatusReason, msg string) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg}}
}

func newUnsupportedMediaType(mt string) error {
	return statusError(http.StatusUnsupportedMediaType, metav1.StatusReasonUnsupportedMediaType,
		fmt.Sprintf("the body of the request was in an unknown format (%s); accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf", mt))
}

func newNotAcceptable(msg string) error {
	return statusError(http.StatusNotAcceptable, metav1.StatusReasonNotAcceptable, msg)
}

func newUnprocessable(err error) error {
	return statusError(http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "the server rejected our request due to an error in our request: "+err.Error())
}
