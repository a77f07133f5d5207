module ims-core/tests/node/pause

go 1.26
