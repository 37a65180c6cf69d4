module plugin-operator.dev/tools/copy-tree

go 1.22
