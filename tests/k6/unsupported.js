// A k6 module loadrig does not have.
import grpc from "k6/net/grpc";
export default function () {}
