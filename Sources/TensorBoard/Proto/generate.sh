#!/usr/bin/env bash
# Regenerates ../events.pb.swift from events.proto. Needs protoc (Debian: protobuf-compiler) and
# protoc-gen-swift of the swift-protobuf version Package.swift names, built once:
#   git clone https://github.com/apple/swift-protobuf && cd swift-protobuf && git checkout 1.39.0
#   swift build -c release --product protoc-gen-swift
# then: PROTOC_GEN_SWIFT=/path/to/swift-protobuf/.build/release/protoc-gen-swift bash generate.sh
set -euo pipefail
cd "$(dirname "$0")"
: "${PROTOC_GEN_SWIFT:?set PROTOC_GEN_SWIFT to the protoc-gen-swift binary}"
protoc --plugin=protoc-gen-swift="$PROTOC_GEN_SWIFT" --swift_out=.. --swift_opt=Visibility=Public events.proto
