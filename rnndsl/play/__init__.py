"""The playground (`rnndsl play`): takes a browser's requests on 127.0.0.1, gives a page to edit a spec, its
graphs and a short training run with its loss drawn live."""
