// @ts-check
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'coverage/', 'node_modules/', 'bench/.work/', '.syncguard-demo/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: globals.node,
      parserOptions: {
        projectService: { allowDefaultProject: ['eslint.config.js'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // An async function without `await` is how an implementation of an async interface (the memory
      // store, the fakes in tests) turns a thrown error into a rejected promise; the rule would push
      // toward Promise.resolve()/Promise.reject() boilerplate that reads worse and does the same.
      '@typescript-eslint/require-await': 'off',
      // The Dropbox SDK's DropboxResponseError is an Error at run time, but its typings do not say so.
      '@typescript-eslint/only-throw-error': [
        'error',
        { allow: [{ from: 'package', package: 'dropbox', name: 'DropboxResponseError' }] },
      ],
      // `_`-prefixed parameters and variables are unused on purpose (an interface's signature).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // Tests read what the CLI prints with --json and the bodies the emulators receive, as JSON, and
      // assert on its shape: that is the check. A cast before each assertion would only restate it.
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    files: ['bench/**/*.mjs'],
    rules: {
      // The benchmark is plain JavaScript type-checked without strict mode (bench/tsconfig.json), so
      // parsed JSON, child-process messages and the like are `any` by design; these rules would flag
      // nearly every line of it without making it safer.
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
);
