"""json-rewrite: renames one top-level JSON field (`from` -> `to`) with a byte-level rewrite.

A record whose value is not a JSON object (its first byte is not `{`) is reported as a bad
record by its index; a record without a value is left alone. No JSON parsing: only the first
occurrence of `"<from>":` is replaced by `"<to>":`.
"""
import weir


class JsonRewrite(weir.Transform):
    name, version, description = "json-rewrite", "0.2.0", "Renames a top-level JSON field"
    config_keys = [weir.key("from", "field to rename", required=True),
                   weir.key("to", "its new name", required=True)]

    def open(self, config):
        self.old = b'"%s":' % config.require("from").encode()
        self.new = b'"%s":' % config.require("to").encode()

    def transform(self, record):
        value = record.value
        if value is None:
            return record
        if value[:1] != b"{":
            raise weir.BadRecord(record.index, "value is not a JSON object")
        if self.old in value:
            record.value = value.replace(self.old, self.new, 1)
        return record


Transformer = weir.transformer(JsonRewrite)
