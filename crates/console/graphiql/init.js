// Mailgate's GraphiQL: the editor on this server's /graphql. Headers (the bearer token)
// are typed in the Headers tab and never stored by the page.
const root = ReactDOM.createRoot(document.getElementById("graphiql"));
const fetcher = GraphiQL.createFetcher({ url: "/graphql" });
root.render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultEditorToolsVisibility: "headers",
    shouldPersistHeaders: false,
  }),
);
