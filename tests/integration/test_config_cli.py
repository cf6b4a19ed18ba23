"""The command line and config errors as an operator sees them: -t on good
and bad configs (file:line:column, did-you-mean), ${VAR}, !include, -T, -M,
and module loading errors naming the config line."""

import os
import subprocess
import unittest

from harness import BUILD_DIR, TWISTER, Server, request

GOOD = """
modules: [hello]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /hello
        handler: hello
        hello: { message: "${GREETING:-Hi there}" }
"""


class ConfigCliTest(unittest.TestCase):
    def check(self, config, env=None, files=None):
        s = Server(config, env=env, extra_files=files)
        try:
            return s.run("-t")
        finally:
            s.__exit__(None, None, None)

    def test_good_config(self):
        rc, out = self.check(GOOD)
        self.assertEqual(rc, 0, out)
        self.assertIn("configuration OK", out)

    def test_unknown_key_with_suggestion(self):
        rc, out = self.check(GOOD + "worker_connection: 10\n")
        self.assertEqual(rc, 1)
        self.assertRegex(out, r"twister\.yaml:\d+:1: .*unknown key 'worker_connection'")
        self.assertIn("did you mean 'worker_connections'", out)

    def test_type_error_names_path_and_position(self):
        rc, out = self.check(GOOD.replace('"${GREETING:-Hi there}"', "[1, 2]"))
        self.assertEqual(rc, 1)
        self.assertRegex(out, r"twister\.yaml:12:\d+: servers\[0\]\.routes\[0\]\.hello\.message")

    def test_yaml_syntax_error(self):
        rc, out = self.check(GOOD + "limits: { body: [\n")
        self.assertEqual(rc, 1)
        self.assertRegex(out, r"twister\.yaml:\d+:\d+:")

    def test_env_substitution(self):
        s = Server(GOOD, env={"GREETING": "Hello from env"})
        with s:
            self.assertEqual(request(s.port, path="/hello").body, b"Hello from env")
        rc, out = self.check(GOOD.replace("${GREETING:-Hi there}", "${TWISTER_SURELY_UNSET}"))
        self.assertEqual(rc, 1)
        self.assertIn("TWISTER_SURELY_UNSET", out)

    def test_include(self):
        config = GOOD.replace('hello: { message: "${GREETING:-Hi there}" }', "hello: !include hello.yaml")
        s = Server(config, extra_files={"hello.yaml": "message: included\n"})
        with s:
            self.assertEqual(request(s.port, path="/hello").body, b"included")
        rc, out = self.check(config, files={"hello.yaml": "message: !include hello.yaml\n"})
        self.assertEqual(rc, 1)
        self.assertIn("hello.yaml", out)

    def test_costly_regex_is_refused_before_compiling(self):
        # regcomp unrolls bounded repetitions: this one would take gigabytes
        # and many seconds; the bound check answers at once.
        config = GOOD.replace("- path: /hello", "- regex: 'a{1000}{1000}{1000}'")
        rc, out = self.check(config)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"twister\.yaml:10:16: servers\[0\]\.routes\[0\]\.regex: regular "
                              r"expression too costly to compile: at character 2: repetition "
                              r"count 1000 in '\{1000\}' is more than 255")
        rc, out = self.check(GOOD.replace("- path: /hello", "- regex: '(a{100}){100}'"))
        self.assertEqual(rc, 1, out)
        self.assertIn("nested repetitions multiply to 10000 copies; at most 1000", out)

    def test_missing_module_file_names_config_line(self):
        rc, out = self.check(GOOD.replace("modules: [hello]", "modules:\n  - hello\n  - ./nope.so"))
        self.assertEqual(rc, 1)
        self.assertRegex(out, r"twister\.yaml:\d+:\d+: modules\[1\]")
        self.assertIn("nope.so", out)

    def test_plugin_calling_an_internal_function_is_refused(self):
        # The core defines tw_router_find, but no public header declares it,
        # so the server does not export it and the plugin cannot load.
        symbols = subprocess.run(["nm", "--defined-only", TWISTER], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL).stdout.decode()
        if symbols:  # a stripped binary has no table to look in
            self.assertRegex(symbols, r"(?m) T tw_router_find$")
        plugin = os.path.join(BUILD_DIR, "tests", "plugins", "internal_symbol.so")
        rc, out = self.check(GOOD.replace("modules: [hello]",
                                          "modules:\n  - hello\n  - %s" % plugin))
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"twister\.yaml:8:5: modules\[1\]: .*internal_symbol\.so: cannot load: "
                              r".*undefined symbol: tw_router_find")
        self.assertIn("the plugin calls tw_router_find, which is not part of this server's plugin "
                      "API (the functions declared in <twister/*.h>)", out)

    def test_unknown_handler(self):
        rc, out = self.check(GOOD.replace("handler: hello", "handler: helo"))
        self.assertEqual(rc, 1)
        self.assertRegex(out, r"twister\.yaml:\d+:\d+:.*helo")

    def test_module_rejects_its_settings(self):
        rc, out = self.check(GOOD.replace('message: "${GREETING:-Hi there}"', 'mesage: "x"'))
        self.assertEqual(rc, 1)
        self.assertIn("mesage", out)
        self.assertIn("did you mean 'message'", out)

    def test_dump_and_modules(self):
        s = Server(GOOD)
        try:
            rc, out = s.run("-T")
            self.assertEqual(rc, 0, out)
            self.assertIn("Hi there", out)
            rc, out = s.run("-M")
            self.assertEqual(rc, 0, out)
            self.assertIn("hello", out)
            rc, out = s.run("-x")
            self.assertEqual(rc, 2)
            self.assertIn("usage", out)
        finally:
            s.__exit__(None, None, None)


if __name__ == "__main__":
    unittest.main(verbosity=2)
