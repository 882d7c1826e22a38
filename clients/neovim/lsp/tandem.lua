-- tandem-ls: local-first AI code completion (https://github.com/tandem-ls/tandem-ls)
--
-- Use with Neovim 0.11+:
--
--   vim.lsp.enable("tandem")                  -- this file is found on 'runtimepath'
--   vim.lsp.config("tandem", { settings = { tandem = { ... } } })   -- optional
--
-- or through require("tandem").setup(), which also adds ghost text, commands and
-- the statusline component.
--
-- Settings (section "tandem"; the server documents every one in its README):
--   offline = false                 never open a network connection
--   ["local"] = {                   the in-process llama.cpp backend
--     modelPath = "",               a GGUF file; "" = the default model
--     nGpuLayers = nil,             nil: all layers on the GPU when the build can
--     nThreads = nil, nCtx = 4096, fimFormat = "auto",
--   }
--   completion = {
--     enabled = true, debounceMs = 50, maxTokens = 96, maxLines = 12,
--     multiline = true, temperature = 0.0, postprocess = true,
--   }
--
-- The environment variable TANDEM_MODEL (a GGUF path) overrides local.modelPath.

---@type vim.lsp.Config
return {
  cmd = { "tandem-ls" },
  filetypes = {
    "python", "lua", "javascript", "javascriptreact", "typescript", "typescriptreact",
    "go", "rust", "java", "c", "cpp", "ruby", "php", "sh", "zig", "kotlin", "swift",
  },
  root_markers = { ".git", "pyproject.toml", "package.json", "go.mod", "Cargo.toml" },
  settings = { tandem = {} },
  -- Neovim 0.11 does not declare inline completion; the ghost-text shim in
  -- lua/tandem/ghost.lua handles it, so say so (0.12 declares it itself).
  capabilities = vim.fn.has("nvim-0.12") == 1 and {} or {
    textDocument = { inlineCompletion = { dynamicRegistration = false } },
  },
}
